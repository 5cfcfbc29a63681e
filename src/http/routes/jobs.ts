// Jobs and queues: `celery inspect active` (GET /jobs?state=active), one job with its data and output,
// retrying a failed or dead-lettered job, redriving the charge dead-letter queue, and the counts by state of
// every queue.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { JOB_STATES, findJob } from '../../db/jobs.ts';
import { AppError } from '../../errors.ts';
import { redactSerializedError } from '../../log.ts';
import { redriveChargeDeadLetters, retryJob } from '../../ops/control.ts';
import { decodeCursor, jobsByState } from '../../ops/inspect.ts';
import { queueStates } from '../../ops/queues.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { noBody, pageLimit } from '../schemas.ts';

const jobId = z.object({ id: z.uuid() });

export function jobRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/jobs',
      {
        config: { access: 'read' },
        schema: {
          tags: ['jobs'],
          summary: 'Jobs, newest first (state=active is `celery inspect active`), paginated by cursor',
          querystring: z
            .object({
              state: z.enum(JOB_STATES).optional(),
              task: z.string().min(1).max(100).optional(),
              limit: pageLimit(500, 50),
              cursor: z.string().max(200).optional(),
            })
            .strict(),
        },
      },
      async (request) => {
        const { state, task, limit, cursor } = request.query;
        const after = cursor === undefined ? undefined : decodeCursor(cursor);
        if (after === null) throw new AppError('INVALID_INPUT', 'cursor: not a cursor returned by this API');
        return jobsByState(deps, { state, queue: task, limit, after });
      },
    );

    app.get(
      '/jobs/:id',
      {
        config: { access: 'read' },
        schema: { tags: ['jobs'], summary: 'One job: data, state, timings, attempts, output', params: jobId },
      },
      async (request) => {
        const job = await findJob(deps.pool, request.params.id);
        if (job === null) throw new AppError('NOT_FOUND', `no job ${request.params.id}`);
        // A failed job's output is the error its handler threw, as pg-boss stored it: a query's values or a
        // violating row (card tokens) among its fields. Read tokens see it as the logs do.
        return { ...job, output: redactSerializedError(job.output) };
      },
    );

    app.post(
      '/jobs/:id/retry',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['jobs'],
          summary: 'Retry a failed job, or send a dead-lettered one back to its queue',
          params: jobId,
          body: noBody,
        },
      },
      async (request) => retryJob(deps, actor(request), request.params.id),
    );

    app.post(
      '/queues/cobrar_recorrencia_dlq/redrive',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['jobs'],
          summary: 'Send dead-lettered charge jobs back to cobrar_recorrencia, oldest first (up to limit)',
          body: z
            .object({ limit: z.number().int().min(1).max(1_000_000).default(1_000_000) })
            .strict()
            .nullish(),
        },
      },
      async (request) => redriveChargeDeadLetters(deps, actor(request), request.body?.limit ?? 1_000_000),
    );

    app.get(
      '/queues',
      {
        config: { access: 'read' },
        schema: { tags: ['jobs'], summary: 'Per queue: jobs by state, dead-lettered, paused' },
      },
      async () => ({ queues: await queueStates(deps) }),
    );
  };
}
