// Builds the admin HTTP server (Fastify). It never listens by itself: the admin role does, and tests use
// `app.inject`. One error handler: 4xx say what was wrong, 5xx say nothing internal and are logged.
import Fastify, { type FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.ts';
import type { DatabasePool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { registerErrorHandling } from './errors.ts';
import { healthRoutes } from './routes/health.ts';

export type AdminDeps = {
  config: Config;
  log: Logger;
  pool: DatabasePool;
};

export async function buildAdminApp(deps: AdminDeps) {
  const app = Fastify({
    // pino's Logger and Fastify's base logger type differ only in generics; routes are typed with the base one.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.config.admin.bodyLimitBytes,
    // Prototype-pollution payloads are refused outright rather than silently stripped.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    requestIdHeader: 'x-request-id',
  });
  registerErrorHandling(app);
  await app.register(healthRoutes(deps));
  return app;
}
