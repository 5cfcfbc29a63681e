// `worker`: takes jobs from every queue and runs their handlers: the four periodic tasks (one job at a time
// per task; hard limit = job expiry, soft limit = warning), the per-charge jobs and notice deliveries. Paused
// queues (tarefas_pausadas) are not worked until resumed.
import type { JobResult, JobWithMetadata, PgBoss } from 'pg-boss';
import { ConfigError, type Config } from '../config.ts';
import { createHttpGateway } from '../gateway/http-gateway.ts';
import type { PaymentGateway } from '../gateway/gateway.ts';
import type { Running } from '../lifecycle.ts';
import { createBoss } from '../queue/boss.ts';
import { startPauseWatcher, type QueueRegistration } from '../queue/pause-watcher.ts';
import { queuePolicyDrift } from '../queue/queue-options.ts';
import {
  CHARGE_QUEUE,
  CHECKOUT_EVENT_QUEUE,
  NOTICE_DELIVERY_QUEUE,
  PERIODIC_TASKS,
} from '../queue/task-names.ts';
import { chargeQueueWorker } from '../tasks/charge/charge-worker.ts';
import { armedTestHooks } from '../tasks/charge/test-hooks.ts';
import { registerCheckoutEventWorker, registerNoticeWorker } from '../tasks/notices/notice-worker.ts';
import { InvalidPayloadError, jobBusinessDate, runPeriodicTask } from '../tasks/periodic-runner.ts';
import { PERIODIC_TASK_DEFINITIONS } from '../tasks/registry.ts';
import type { TaskDeps } from '../tasks/task.ts';
import { connectToMigratedDatabase } from './connect.ts';
import type { RoleContext } from './context.ts';

function periodicRegistrations(boss: PgBoss, deps: TaskDeps): QueueRegistration[] {
  return PERIODIC_TASKS.map((name) => {
    const task = PERIODIC_TASK_DEFINITIONS[name];
    const handle = async (job: JobWithMetadata<unknown>): Promise<JobResult> => {
      try {
        const { date, force } = await jobBusinessDate(task, deps, job);
        const outcome = await runPeriodicTask(task, deps, {
          date,
          force,
          jobId: job.id,
          attempt: job.retryCount + 1,
          signal: job.signal,
        });
        return { id: job.id, status: 'completed', output: outcome };
      } catch (error) {
        if (error instanceof InvalidPayloadError) {
          // Retrying a malformed payload cannot help: fail it for good, visibly.
          deps.log.error(
            { task: name, jobId: job.id, err: error },
            'invalid task payload: job failed without retry',
          );
          return { id: job.id, status: 'deadletter', output: { error: error.message } };
        }
        throw error;
      }
    };
    return {
      queue: name,
      register: async () => {
        await boss.work(
          name,
          {
            batchSize: 1,
            includeMetadata: true,
            perJobResults: true,
            pollingIntervalSeconds: deps.config.worker.pollIntervalSeconds,
          },
          async (jobs: JobWithMetadata<unknown>[]) => Promise.all(jobs.map(handle)),
        );
      },
    };
  });
}

export function gatewayFor(config: Config, log: RoleContext['log']): PaymentGateway {
  if (config.gateway.url === undefined) throw new Error('GATEWAY_URL is required for workers');
  return createHttpGateway({
    url: config.gateway.url,
    apiKey: config.gateway.apiKey,
    timeoutMs: config.gateway.timeoutMs,
    log,
  });
}

export async function startWorker(
  ctx: RoleContext,
  options: { gateway?: PaymentGateway } = {},
): Promise<Running> {
  const { config, log, databaseUrl } = ctx;
  const gateway = options.gateway ?? gatewayFor(config, log.child({ component: 'gateway' }));
  const hooks = armedTestHooks();
  // They break exactly-once on purpose: a production image (NODE_ENV=production) refuses to run with them.
  if (hooks.length > 0 && process.env.NODE_ENV === 'production') {
    throw new ConfigError([
      `RECORRENCIAS_TEST_CRASH_POINTS/RECORRENCIAS_TEST_MUTANTS: test hooks armed (${hooks.join(', ')}), refused with NODE_ENV=production`,
    ]);
  }
  if (hooks.length > 0)
    log.warn(
      { hooks },
      'TEST HOOKS ARMED: this worker crashes or misbehaves on purpose (never in production)',
    );
  // A worker holds its whole connection budget before it takes a job (see holdAllConnections).
  const pool = await connectToMigratedDatabase(ctx, 'worker', { holdConnections: true });
  const boss = createBoss(config, databaseUrl, 'worker', log);
  const stops: Array<() => void> = [];
  try {
    await boss.start();
    const deps: TaskDeps = { config, pool, boss, log, now: () => new Date() };
    const charges = await chargeQueueWorker(boss, {
      ...deps,
      gateway,
      log: log.child({ queue: CHARGE_QUEUE }),
    });
    stops.push(charges.stop);
    const notices = {
      queue: NOTICE_DELIVERY_QUEUE,
      register: () =>
        registerNoticeWorker(boss, { ...deps, log: log.child({ queue: NOTICE_DELIVERY_QUEUE }) }),
    };
    const checkoutEvents = {
      queue: CHECKOUT_EVENT_QUEUE,
      register: () =>
        registerCheckoutEventWorker(boss, { ...deps, log: log.child({ queue: CHECKOUT_EVENT_QUEUE }) }),
    };
    const watcher = await startPauseWatcher(boss, pool, log, [
      ...periodicRegistrations(boss, deps),
      charges,
      notices,
      checkoutEvents,
    ]);
    stops.push(() => watcher.stop());
    log.info(
      {
        queues: watcher.working(),
        concurrency: config.worker.concurrency,
        taskHardLimitSeconds: config.tasks.hardLimitSeconds,
        chargeHardLimitSeconds: config.charges.hardLimitSeconds,
        gateway: config.gateway.url ?? 'in-process (development)',
        gatewayMaxConcurrency: config.gateway.maxConcurrency,
      },
      'worker started',
    );
    const drift = queuePolicyDrift(await boss.getQueues(), config);
    if (drift.length > 0) {
      // The queues keep the policy `migrate` last stored; this process's settings for it have no effect.
      log.warn({ drift }, 'queue policies differ from this configuration: run migrate to apply them');
    }
    if (config.notices.webhookUrl === undefined) {
      // The worker that runs the 18:00 task decides: this one would record the day's notices without sending
      // them, and count their holds as announced (recorrencias_notices_recorded_unsent).
      log.warn(
        'NOTICE_WEBHOOK_URL is not set: a notificar_recorrencias_hold run on this worker records seller notices in avisos_vendedores, not sent',
      );
    }
    if (config.checkout.webhookUrl === undefined) {
      log.warn('CHECKOUT_WEBHOOK_URL is not set: checkout events are recorded in eventos_checkout, not sent');
    }
  } catch (error) {
    for (const stop of stops) stop();
    await boss.stop({ graceful: false }).catch(() => undefined);
    await pool.end();
    throw error;
  }
  return {
    stop: async () => {
      for (const stop of stops) stop();
      // Waits for in-flight jobs up to the hard limit; pg-boss fails (and so retries) whatever is still running.
      await boss.stop({ graceful: true, timeout: config.tasks.hardLimitSeconds * 1000 });
      await pool.end();
    },
  };
}
