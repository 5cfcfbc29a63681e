// Sending a seller notice or a checkout event again, by hand (see ops/outbox-redelivery.ts).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { redeliverOutboxEntry } from '../../ops/outbox-redelivery.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { noBody, rowId } from '../schemas.ts';

const entryId = z.object({ id: rowId });

export function outboxRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    for (const [path, table] of [
      ['/eventos-checkout/:id/reenviar', 'eventos_checkout'],
      ['/avisos/:id/reenviar', 'avisos_vendedores'],
    ] as const) {
      app.post(
        path,
        {
          config: { access: 'operator' },
          schema: {
            tags: ['outbox'],
            summary: `Deliver a ${table} entry again (only one that failed for good or was only recorded; 409 otherwise)`,
            params: entryId,
            body: noBody,
          },
        },
        async (request) => redeliverOutboxEntry(deps, actor(request), table, request.params.id),
      );
    }
  };
}
