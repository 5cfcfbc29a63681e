// GET /metrics: Prometheus text format, read from the database at each scrape. Read scope: Prometheus scrapes
// with a read token (`authorization: { credentials: <token> }` in its scrape config).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { createMetrics } from '../../ops/metrics.ts';
import type { AdminDeps } from '../app.ts';

export function metricsRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  // One registry per app: several apps in one process (tests) never share metric state.
  const metrics = createMetrics(deps);
  return async (app) => {
    app.get(
      '/metrics',
      {
        config: { access: 'read' },
        schema: {
          tags: ['ops'],
          summary:
            'Prometheus metrics (text format): queues, charges, recurrences, task runs, notices, instances',
        },
      },
      async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()),
    );
  };
}
