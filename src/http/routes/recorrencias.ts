// Recurrence counts (the seed's psql queries, for the business date), one recurrence with its attempts, and
// taking a recurrence off hold.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { recurrenceStats } from '../../db/stats.ts';
import { businessDate, isoDate } from '../../domain/dates.ts';
import { reactivateRecurrence } from '../../ops/recurrence-changes.ts';
import { recurrenceDetail } from '../../ops/recurrences.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { recurrenceId } from '../schemas.ts';

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
  };
}
