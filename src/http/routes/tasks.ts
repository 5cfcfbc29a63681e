// Tasks and schedules: `celery inspect registered / scheduled`, running a task now, pausing and resuming a
// task or queue across the cluster.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isoDate } from '../../domain/dates.ts';
import { dryRunTask } from '../../ops/charge-preview.ts';
import { pauseQueue, resumeQueue, runTask } from '../../ops/control.ts';
import { registeredTasks, schedules } from '../../ops/inspect.ts';
import type { AdminDeps } from '../app.ts';
import { actor } from '../auth.ts';
import { noBody } from '../schemas.ts';

const name = z.object({ name: z.string().min(1).max(100) });

export function taskRoutes(deps: AdminDeps): FastifyPluginAsyncZod {
  return async (app) => {
    app.get(
      '/tasks',
      {
        config: { access: 'read' },
        schema: {
          tags: ['tasks'],
          summary: 'Registered tasks and queues, their limits, pause state and workers',
        },
      },
      async () => ({ tasks: await registeredTasks(deps) }),
    );

    app.get(
      '/schedules',
      {
        config: { access: 'read' },
        schema: { tags: ['tasks'], summary: 'Schedules with their next runs (local and UTC) and last run' },
      },
      async () => ({ schedules: await schedules(deps) }),
    );

    app.post(
      '/tasks/:name/run',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['tasks'],
          summary:
            'Run a task now for a business date (default today); 202 with the job id. dryRun: 200 with what it would do (for processar_recorrencias_do_dia the list of charges, paginated by limit and cursor), nothing run',
          params: name,
          body: z
            .object({
              date: isoDate.optional(),
              force: z.boolean().optional(),
              allowFutureDate: z
                .boolean()
                .optional()
                .describe('a date after today is refused unless this is true (it would charge now)'),
              dryRun: z.boolean().optional(),
              limit: z.number().int().min(1).max(10_000).default(1_000),
              cursor: z.string().max(200).optional(),
            })
            .strict()
            .nullish(),
        },
      },
      async (request, reply) => {
        const { dryRun, limit = 1_000, cursor, date } = request.body ?? {};
        if (dryRun === true) return dryRunTask(deps, request.params.name, { date, limit, cursor });
        const answer = await runTask(deps, actor(request), request.params.name, request.body ?? {});
        return reply.status(answer.status === 'queued' ? 202 : 200).send(answer);
      },
    );

    app.post(
      '/tasks/:name/pause',
      {
        config: { access: 'operator' },
        schema: {
          tags: ['tasks'],
          summary:
            'Pause a task or queue across the cluster (schedulers skip its ticks, workers stop taking its jobs)',
          params: name,
          body: z
            .object({ reason: z.string().max(500).optional() })
            .strict()
            .nullish(),
        },
      },
      async (request) => pauseQueue(deps, actor(request), request.params.name, request.body?.reason ?? null),
    );

    app.post(
      '/tasks/:name/resume',
      {
        config: { access: 'operator' },
        schema: { tags: ['tasks'], summary: 'Resume a paused task or queue', params: name, body: noBody },
      },
      async (request) => resumeQueue(deps, actor(request), request.params.name),
    );
  };
}
