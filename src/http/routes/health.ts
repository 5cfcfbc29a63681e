// Liveness and readiness, without authentication: /healthz says the process is up, /readyz that the
// database answers and its schema is current for this release (load balancers and compose use it).
import type { FastifyPluginAsync } from 'fastify';
import { runnerFor } from '../../db/raw-query.ts';
import { checkSchema } from '../../db/schema-check.ts';
import type { AdminDeps } from '../app.ts';

export function healthRoutes(deps: AdminDeps): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', { config: { access: 'public' } }, async () => ({ status: 'ok' }));

    app.get('/readyz', { config: { access: 'public' } }, async (request, reply) => {
      try {
        const state = await checkSchema(runnerFor(deps.pool));
        if (!state.ok) return reply.status(503).send({ status: 'not_ready', reason: state.reason });
        return { status: 'ready' };
      } catch (error) {
        request.log.warn({ err: error }, 'readiness check failed');
        return reply.status(503).send({ status: 'not_ready', reason: 'database unreachable' });
      }
    });
  };
}
