// Takes charge jobs from `cobrar_recorrencia` and runs the charge protocol for each, settling every job of a
// batch on its own (one slow or failing charge never retries its neighbours). Logs a summary every 10 s.
import type { JobResult, Job, PgBoss } from 'pg-boss';
import type { Config } from '../../config.ts';
import { ensureGatewaySlots } from '../../db/gateway-slots.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import { chargeJobPayload } from './charge-jobs.ts';
import { chargeRecurrence, type ChargeDeps, type ChargeResult } from './charge-recurrence.ts';

/** How a worker's WORKER_CONCURRENCY charges in flight are split into parallel fetch loops and batch sizes. */
export function chargeWorkShape(config: Config): { localConcurrency: number; batchSize: number } {
  const localConcurrency = Math.min(config.worker.concurrency, 8);
  return { localConcurrency, batchSize: Math.ceil(config.worker.concurrency / localConcurrency) };
}

function settle(result: ChargeResult): JobResult['status'] {
  switch (result.status) {
    case 'unresolved':
    case 'claim_lost':
      return 'failed';
    case 'rejected':
      return 'deadletter';
    default:
      return 'completed';
  }
}

/**
 * Prepares the charge queue's handler (and the gateway slots); `register` starts taking jobs and may be
 * called again after a pause. `stop` ends the periodic summary.
 */
export async function chargeQueueWorker(
  boss: PgBoss,
  deps: ChargeDeps,
): Promise<{ queue: string; register: () => Promise<void>; stop: () => void }> {
  if (deps.config.gateway.maxConcurrency > 0)
    await ensureGatewaySlots(deps.pool, deps.config.gateway.maxConcurrency);
  const counts = new Map<string, number>();
  const count = (status: string) => counts.set(status, (counts.get(status) ?? 0) + 1);
  const summary = setInterval(() => {
    if (counts.size === 0) return;
    deps.log.info({ charges: Object.fromEntries(counts) }, 'charge jobs settled in the last 10 s');
    counts.clear();
  }, 10_000);
  summary.unref();

  const handleOne = async (job: Job<unknown>): Promise<JobResult> => {
    const parsed = chargeJobPayload.safeParse(job.data);
    if (!parsed.success) {
      count('invalid_payload');
      deps.log.error(
        { jobId: job.id, issues: parsed.error.issues },
        'invalid charge job payload: failed without retry',
      );
      return {
        id: job.id,
        status: 'deadletter',
        output: { error: 'invalid payload', issues: parsed.error.issues },
      };
    }
    try {
      const result = await chargeRecurrence(deps, { ...job, data: parsed.data });
      count(result.status);
      return { id: job.id, status: settle(result), output: result };
    } catch (error) {
      count('error');
      deps.log.error(
        { err: error, jobId: job.id, recorrenciaId: parsed.data.recorrenciaId },
        'charge job failed: it will be retried',
      );
      return { id: job.id, status: 'failed', output: { error: (error as Error).message } };
    }
  };

  const shape = chargeWorkShape(deps.config);
  return {
    queue: CHARGE_QUEUE,
    register: async () => {
      await boss.work(
        CHARGE_QUEUE,
        {
          ...shape,
          perJobResults: true,
          pollingIntervalSeconds: deps.config.worker.pollIntervalSeconds,
          burstWhenBatchFull: shape.batchSize > 1,
        },
        async (jobs: Job<unknown>[]) => Promise.all(jobs.map(handleOne)),
      );
    },
    stop: () => clearInterval(summary),
  };
}
