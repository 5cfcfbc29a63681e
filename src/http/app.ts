// Builds the admin HTTP server (Fastify). It never listens by itself: the admin role does, and tests use
// `app.inject`. Every input is validated with zod (fastify-type-provider-zod), documented at /docs
// (OpenAPI), and authenticated by bearer token except health, the dashboard page and the docs.
import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config.ts';
import type { DatabasePool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { registerAuth } from './auth.ts';
import { registerErrorHandling } from './errors.ts';
import { refuseNulCharacters } from './no-nul.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { healthRoutes } from './routes/health.ts';
import { jobRoutes } from './routes/jobs.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { outboxRoutes } from './routes/outbox.ts';
import { recurrenceRoutes } from './routes/recorrencias.ts';
import { recurrenceLifecycleRoutes } from './routes/recurrence-lifecycle.ts';
import { taskRoutes } from './routes/tasks.ts';

export type AdminDeps = {
  config: Config;
  log: Logger;
  pool: DatabasePool;
  boss: PgBoss;
  now: () => Date;
};

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export async function buildAdminApp(deps: AdminDeps) {
  const app = Fastify({
    // pino's Logger and Fastify's base logger type differ only in generics; routes are typed with the base one.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.config.admin.bodyLimitBytes,
    // Prototype-pollution payloads are refused outright rather than silently stripped.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // The caller's X-Request-Id is kept only when it looks like an id: it goes into every log line of the request,
    // and a free-form one (any text, 16 KB) would let a caller forge another request's id or pad the logs.
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  }).withTypeProvider<ZodTypeProvider>();
  // Echoed, so a caller can quote it when something went wrong.
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app);
  refuseNulCharacters(app);
  registerAuth(app, deps.config.admin.tokens);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'recorrencias admin API',
        version: '1',
        description: 'Inspect and steer the recurrence service.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(healthRoutes(deps));
  await app.register(dashboardRoutes());
  await app.register(taskRoutes(deps));
  await app.register(jobRoutes(deps));
  await app.register(recurrenceRoutes(deps));
  await app.register(recurrenceLifecycleRoutes(deps));
  await app.register(outboxRoutes(deps));
  await app.register(metricsRoutes(deps));
  return app;
}

export type AdminApp = Awaited<ReturnType<typeof buildAdminApp>>;
