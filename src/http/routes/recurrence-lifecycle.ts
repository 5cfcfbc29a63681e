// The recurrence lifecycle for the checkout: create (with Idempotency-Key), list, change, pausar, retomar,
// cancelar. A `checkout` token (or an operator) may call every route here; a `read` token only the list.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { RECURRENCE_STATUSES } from '../../db/recorrencias.ts';
import { PERIODICITIES } from '../../domain/calendar.ts';
import { isoDate } from '../../domain/dates.ts';
import { TRANSITIONS } from '../../domain/recurrence-rules.ts';
import { changeRecurrence, transitionRecurrence } from '../../ops/recurrence-changes.ts';
import { createRecurrence, listRecurrences } from '../../ops/recurrence-create.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { noBody, pageLimit, recurrenceId } from '../schemas.ts';

const text = (max: number) => z.string().trim().min(1).max(max);
const cents = z.number().int().positive().max(1_000_000_000_000);
const brand = z
  .string()
  .regex(/^[a-z]{2,20}$/, 'lower-case letters, e.g. visa, mastercard, elo')
  .describe('card brand');

const newRecurrence = z
  .object({
    vendedor_id: text(100),
    cliente_ref: text(200).nullish().default(null),
    cartao_token: text(255).describe("the gateway's reference to a stored card (never card data)"),
    bandeira: brand,
    valor_centavos: cents.describe('amount in integer cents'),
    moeda: z
      .string()
      .regex(/^[A-Z]{3}$/)
      .default('BRL'),
    periodicidade: z.enum(PERIODICITIES),
    dia_ancora: z
      .number()
      .int()
      .min(1)
      .max(31)
      .nullish()
      .default(null)
      .describe('anchor day: required for mensal, trimestral, semestral, anual; absent for semanal'),
    proxima_cobranca: isoDate.describe(
      "first charge date (today or later); its day is the anchor day, or its month's last day when the anchor is beyond it",
    ),
    total_ciclos: z.number().int().positive().max(10_000).nullish().default(null).describe('absent: no end'),
    descricao: z.string().max(500).default(''),
    referencia_externa: text(200).nullish().default(null).describe("the caller's own reference"),
  })
  .strict();

const recurrenceChanges = z
  .object({
    valor_centavos: cents.optional(),
    cartao_token: text(255).optional(),
    bandeira: brand.optional(),
    dia_ancora: z.number().int().min(1).max(31).optional(),
    proxima_cobranca: isoDate.optional(),
    descricao: z.string().max(500).optional(),
  })
  .strict()
  .refine((body) => Object.values(body).some((value) => value !== undefined), 'nothing to change')
  .refine(
    (body) => (body.cartao_token === undefined) === (body.bandeira === undefined),
    'cartao_token and bandeira change together',
  );

export function recurrenceLifecycleRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.post(
      '/recorrencias',
      {
        config: { access: 'checkout' },
        schema: {
          tags: ['recorrencias'],
          summary:
            'Create a recurrence (201). Idempotency-Key (required for checkout tokens): a repeat answers the first result; the same key with another body answers 422',
          headers: z.looseObject({
            'idempotency-key': z
              .string()
              .regex(/^[\x21-\x7e]{1,255}$/, '1 to 255 visible ASCII characters')
              .optional(),
          }),
          body: newRecurrence,
        },
      },
      async (request, reply) => {
        const key = request.headers['idempotency-key'];
        // The checkout retries what timed out: without a key, a creation whose answer was lost is made twice,
        // and both recurrences charge the card every cycle. An operator creating by hand may go without.
        if (key === undefined && request.principal?.scope === 'checkout') {
          return reply.status(400).send({
            error: 'invalid_request',
            message:
              'headers.idempotency-key: required for checkout tokens (a retried creation without it creates a second recurrence)',
          });
        }
        const answer = await createRecurrence(deps, actor(request), request.body, key);
        if (answer.replayed) reply.header('idempotent-replayed', 'true');
        const created = answer.body as { recorrencia?: { id?: number } };
        if (created.recorrencia?.id !== undefined)
          reply.header('location', `/recorrencias/${created.recorrencia.id}`);
        return reply.status(answer.status).send(answer.body);
      },
    );

    app.get(
      '/recorrencias',
      {
        config: { access: 'read' },
        schema: {
          tags: ['recorrencias'],
          summary: 'Recurrences, newest first, paginated by cursor; proxima_cobranca_ate = due on or before',
          querystring: z
            .object({
              vendedor_id: text(100).optional(),
              status: z.enum(RECURRENCE_STATUSES).optional(),
              proxima_cobranca_ate: isoDate.optional(),
              referencia_externa: text(200).optional(),
              id_legado: text(100).optional(),
              limit: pageLimit(500, 50),
              cursor: z.string().max(200).optional(),
            })
            .strict(),
        },
      },
      async (request) => {
        const { limit, cursor, ...filter } = request.query;
        return listRecurrences(deps, filter, { limit, cursor });
      },
    );

    app.patch(
      '/recorrencias/:id',
      {
        config: { access: 'checkout' },
        schema: {
          tags: ['recorrencias'],
          summary:
            'Change amount, card, anchor/next date or description; applies from the next cycle not in flight (409 when a schedule change could charge a cycle twice)',
          params: recurrenceId,
          body: recurrenceChanges,
        },
      },
      async (request) => changeRecurrence(deps, actor(request), request.params.id, request.body),
    );

    for (const transition of TRANSITIONS) {
      app.post(
        `/recorrencias/:id/${transition}`,
        {
          config: { access: 'checkout' },
          schema: {
            tags: ['recorrencias'],
            summary: {
              pausar: 'Pause (ativo -> pausado); 409 from any other state',
              retomar: 'Resume (pausado -> ativo); cycles that fell in the pause are skipped; 409 otherwise',
              cancelar: 'Cancel (ativo|pausado|hold -> cancelado, final); a charge in flight finishes',
            }[transition],
            params: recurrenceId,
            body: noBody,
          },
        },
        async (request) => transitionRecurrence(deps, actor(request), request.params.id, transition),
      );
    }
  };
}
