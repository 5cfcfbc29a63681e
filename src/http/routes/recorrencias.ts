// Recurrence counts (the seed's psql queries, for the business date), one recurrence with its attempts, and
// taking a recurrence off hold, and an operator's answer for an attempt blocked by a key the gateway holds for
// another request.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { recurrenceStats } from '../../db/stats.ts';
import { businessDate, isoDate } from '../../domain/dates.ts';
import { resolveBlockedAttempt } from '../../ops/blocked-attempts.ts';
import { reactivateRecurrence } from '../../ops/recurrence-changes.ts';
import { recurrenceDetail } from '../../ops/recurrences.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { recurrenceId, rowId } from '../schemas.ts';

const operatorNote = z.string().trim().min(1).max(500).describe('what the operator found, for the audit');

const blockedAttemptResolution = z.discriminatedUnion('resultado', [
  z
    .object({
      resultado: z
        .literal('cobrada')
        .describe("the gateway's request under the key was this cycle's, approved"),
      gateway_ref: z.string().trim().min(1).max(255).describe("the gateway's charge id"),
      valor_centavos: z
        .number()
        .int()
        .positive()
        .max(1_000_000_000_000)
        .describe('the amount the gateway charged under the key (its stored answer says)'),
      moeda: z
        .string()
        .regex(/^[A-Z]{3}$/)
        .describe('the currency the gateway charged'),
      motivo: operatorNote,
    })
    .strict(),
  z
    .object({
      resultado: z.literal('nao_cobrada').describe('nothing of this customer ran under the key'),
      motivo: operatorNote,
    })
    .strict(),
]);

export function recurrenceRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/recorrencias/stats',
      {
        config: { access: 'read' },
        schema: {
          tags: ['recorrencias'],
          summary:
            'Counts by status, due on the business date, on hold, waiting for retry, the day’s attempts with amounts',
          querystring: z.object({ date: isoDate.optional() }).strict(),
        },
      },
      async (request) =>
        recurrenceStats(deps.pool, request.query.date ?? businessDate(deps.now(), deps.config.timeZone)),
    );

    app.get(
      '/recorrencias/:id',
      {
        config: { access: 'read' },
        schema: {
          tags: ['recorrencias'],
          summary: 'One recurrence with its attempts and skipped cycles',
          params: recurrenceId,
        },
      },
      async (request) => recurrenceDetail(deps, request.params.id),
    );

    app.post(
      '/recorrencias/:id/reativar',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['recorrencias'],
          summary:
            'Take a recurrence off hold (only from hold; 409 otherwise, and after an irreversible decline of its current card unless force)',
          params: recurrenceId,
          body: z.object({ force: z.boolean().optional() }).strict().nullish(),
        },
      },
      async (request) =>
        reactivateRecurrence(deps, actor(request), request.params.id, {
          force: request.body?.force ?? false,
        }),
    );

    app.post(
      '/recorrencias/:id/cobrancas/:cobranca/resolver',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['recorrencias'],
          summary:
            'Resolve an attempt blocked on its key (the gateway holds another request under it: 409 idempotency_key_reused; or it is older than the gateway keeps keys: idempotency_key_expired): cobrada (approved, with the gateway charge id, amount and currency) or nao_cobrada (ends rejeitada; the cycle is charged again under a new key after reativar)',
          params: recurrenceId.extend({
            cobranca: rowId.describe('the attempt id (`cobrancas[].id` in GET /recorrencias/:id)'),
          }),
          body: blockedAttemptResolution,
        },
      },
      async (request) =>
        resolveBlockedAttempt(deps, actor(request), request.params.id, request.params.cobranca, request.body),
    );
  };
}
