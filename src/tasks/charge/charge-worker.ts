// Takes charge jobs from `cobrar_recorrencia` in batches and runs the charge protocol for each batch, settling
// every job on its own: once phase 1 has committed, one failing charge never retries its neighbours (a batch
// whose phase 1 fails is retried whole, with nothing sent). Logs a summary every 10 s.
import type { JobResult, Job, PgBoss } from 'pg-boss';
import type { Config } from '../../config.ts';
import { ensureGatewaySlots } from '../../db/gateway-slots.ts';
import { CHARGE_QUEUE } from '../../queue/task-names.ts';
import { chargeJobPayload, type ChargeJobPayload } from './charge-jobs.ts';
import { chargeJobs, type ChargeDeps, type ChargeJob, type ChargeResult } from './charge-recurrence.ts';

/**
 * How a worker's WORKER_CONCURRENCY charges in flight are split into parallel fetch loops and batch sizes.
 * Bigger batches amortise the fetch and the phase-1/phase-3 round trips; a few loops keep a slow gateway call
 * in one batch from idling the whole worker.
 */
export function chargeWorkShape(config: Config): { localConcurrency: number; batchSize: number } {
  const localConcurrency = Math.min(config.worker.concurrency, 4);
  return { localConcurrency, batchSize: Math.ceil(config.worker.concurrency / localConcurrency) };
}

/** How a charge's result settles its job: failed (retried), dead-lettered (for an operator) or completed. */
export function settlementOf(result: ChargeResult): JobResult['status'] {
  switch (result.status) {
    case 'unresolved':
    case 'claim_lost':
    case 'failed':
      return 'failed';
    case 'rejected':
    case 'approved_but_blocked':
    case 'approved_but_ended':
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
  const cap = deps.config.gateway.maxConcurrency;
  if (cap > 0) {
    const before = await ensureGatewaySlots(deps.pool, cap);
    // The slots are shared by the whole cluster, and the last worker to start sets their number: a worker with
    // another GATEWAY_MAX_CONCURRENCY silently changes every worker's cap, so say it loudly.
    if (before > 0 && before !== cap)
      deps.log.warn(
        { gatewayMaxConcurrency: cap, previousSlots: before },
        'GATEWAY_MAX_CONCURRENCY differs from the cap another worker set: the cluster-wide cap is now this one; give every worker the same value',
      );
  }
  const counts = new Map<string, number>();
  const count = (status: string) => counts.set(status, (counts.get(status) ?? 0) + 1);
  const summary = setInterval(() => {
    if (counts.size === 0) return;
    const memory = process.memoryUsage();
    deps.log.info(
      {
        charges: Object.fromEntries(counts),
        rssMb: Math.round(memory.rss / 1_048_576),
        heapUsedMb: Math.round(memory.heapUsed / 1_048_576),
      },
      'charge jobs settled in the last 10 s',
    );
    counts.clear();
  }, 10_000);
  summary.unref();

  const handleBatch = async (jobs: Job<unknown>[]): Promise<JobResult[]> => {
    const valid: ChargeJob[] = [];
    const invalid: JobResult[] = [];
    for (const job of jobs) {
      const parsed = chargeJobPayload.safeParse(job.data);
      if (parsed.success) {
        valid.push({ ...job, data: parsed.data satisfies ChargeJobPayload });
        continue;
      }
      count('invalid_payload');
      deps.log.error(
        { jobId: job.id, issues: parsed.error.issues },
        'invalid charge job payload: failed without retry',
      );
      invalid.push({
        id: job.id,
        status: 'deadletter',
        output: { error: 'invalid payload', issues: parsed.error.issues },
      });
    }
    if (valid.length === 0) return invalid;
    try {
      const results = await chargeJobs(deps, valid);
      return [
        ...invalid,
        ...valid.map((job, i) => {
          const result = results[i] as ChargeResult;
          count(result.status);
          return { id: job.id, status: settlementOf(result), output: result };
        }),
      ];
    } catch (error) {
      count('error');
      deps.log.error(
        {
          err: error,
          jobs: valid.map((job) => job.id),
          recurrences: valid.map((job) => job.data.recorrenciaId),
        },
        'charge batch failed: its jobs will be retried',
      );
      return [
        ...invalid,
        ...valid.map((job) => ({
          id: job.id,
          status: 'failed' as const,
          output: { error: (error as Error).message },
        })),
      ];
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
        handleBatch,
      );
    },
    stop: () => clearInterval(summary),
  };
}
