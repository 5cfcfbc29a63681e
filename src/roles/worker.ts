// `worker`: takes jobs from every queue and runs their handlers: the four periodic tasks (one at a time per
// task, hard limit = job expiry, soft limit = warning) and the per-charge jobs.
import type { JobResult, JobWithMetadata, PgBoss } from 'pg-boss';
import type { Running } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import { createBoss } from '../queue/boss.ts';
import { PERIODIC_TASKS } from '../queue/task-names.ts';
import { InvalidPayloadError, runPeriodicTask } from '../tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';
import type { TaskDeps } from '../tasks/task.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

async function registerPeriodicHandlers(boss: PgBoss, deps: TaskDeps, log: Logger): Promise<void> {
  for (const name of PERIODIC_TASKS) {
    const task = PERIODIC_TASK_DEFINITIONS[name];
    await boss.work(
      name,
      {
        batchSize: 1,
        includeMetadata: true,
        perJobResults: true,
        pollingIntervalSeconds: deps.config.worker.pollIntervalSeconds,
      },
      async (jobs: JobWithMetadata<unknown>[]): Promise<JobResult[]> =>
        Promise.all(
          jobs.map(async (job) => {
            try {
              const outcome = await runPeriodicTask(task, deps, job);
              return { id: job.id, status: 'completed' as const, output: outcome };
            } catch (error) {
              if (error instanceof InvalidPayloadError) {
                // Retrying a malformed payload cannot help: fail it for good, visibly.
                log.error(
                  { task: name, jobId: job.id, err: error },
                  'invalid task payload: job failed without retry',
                );
                return { id: job.id, status: 'deadletter' as const, output: { error: error.message } };
              }
              throw error;
            }
          }),
        ),
    );
  }
}

export async function startWorker(ctx: RoleContext): Promise<Running> {
  const { config, log, databaseUrl } = ctx;
  const pool = await connectToMigratedDatabase(ctx, 'worker');
  const boss = createBoss(config, databaseUrl, 'worker', log);
  try {
    await boss.start();
    const deps: TaskDeps = { config, pool, boss, log };
    await registerPeriodicHandlers(boss, deps, log);
  } catch (error) {
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end();
    throw error;
  }
  log.info(
    {
      queues: [...PERIODIC_TASKS],
      concurrency: config.worker.concurrency,
      hardLimitSeconds: config.tasks.hardLimitSeconds,
    },
    'worker started',
  );
  return {
    stop: async () => {
      // Waits for in-flight jobs up to the hard limit; pg-boss fails (and so retries) whatever is still running.
      await boss.stop({ graceful: true, timeout: config.tasks.hardLimitSeconds * 1000 });
      await pool.end();
    },
  };
}
