// The same-run ceiling of the benchmark: the worker's own charge code (`chargeJobs`: phase 1, the gateway-slot
// statements, the gateway calls, phase 3 with approvals and declines) run by one process shaped like a worker
// (the same fetch loops, batch size, pool and log level), with the queue taken out: batches are cut from a
// range of recurrence ids instead of fetched, and completing a job costs nothing instead of a pg-boss
// statement. So the gap between a worker and this process is what the queue costs (fetch, completion,
// pg-boss's settle, payload validation).
// Without a gateway URL, each charge is answered in-process as the fake gateway would answer it (the same
// seeded mix of approvals and declines, no I/O): the charge SQL alone. With one, each charge makes its HTTP
// call, which separates what the gateway call costs from what the queue costs.
// Usage: node scripts/bench/ceiling.ts <databaseUrl> <firstId> <lastId> <date> <concurrency> <poolSize> <slots>
//        <declineRate> <irreversibleShare> <seed> [gatewayUrl]
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { PgBoss } from 'pg-boss';
import { loadConfig } from '../../src/config.ts';
import { ensureGatewaySlots } from '../../src/db/gateway-slots.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { rawQuery } from '../../src/db/raw-query.ts';
import { isoDate } from '../../src/domain/dates.ts';
import {
  chargeIdFor,
  declineMessage,
  decide,
  type MixSettings,
} from '../../src/gateway/fake-gateway-outcomes.ts';
import type { PaymentGateway } from '../../src/gateway/gateway.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger } from '../../src/log.ts';
import { chargeWorkShape } from '../../src/tasks/charge/charge-worker.ts';
import { chargeJobs, type ChargeDeps, type ChargeJob } from '../../src/tasks/charge/charge-recurrence.ts';
import { cpuSecondsOf } from './system.ts';

const [
  url,
  first,
  last,
  date,
  concurrency,
  poolSize,
  slots,
  declineRate,
  irreversibleShare,
  seed,
  gatewayUrl,
] = process.argv.slice(2);
if (url === undefined || seed === undefined)
  throw new Error(
    'usage: ceiling.ts <url> <firstId> <lastId> <date> <concurrency> <poolSize> <slots> <declineRate> <irreversibleShare> <seed> [gatewayUrl]',
  );
const businessDate = isoDate.parse(date);
const config = loadConfig({ WORKER_CONCURRENCY: concurrency, GATEWAY_MAX_CONCURRENCY: slots });
const shape = chargeWorkShape(config);
const applicationName = `recorrencias:bench-ceiling:${process.pid}`;
const pool = await createDbPool(url, { maxConnections: Number(poolSize), applicationName });
// The workers log at info to a pipe; this process pays the same serialisation and writes it nowhere.
const log = createLogger({
  level: 'info',
  format: 'json',
  role: 'bench-ceiling',
  destination: createWriteStream('/dev/null'),
});

/** Answers each charge as the fake gateway would (same seeded mix), in-process: no HTTP, no ledger. */
function inProcessGateway(mix: MixSettings): PaymentGateway {
  return {
    charge: async (request) => {
      const decision = decide({ key: request.idempotencyKey, cardToken: request.cardToken }, mix);
      const chargeId = chargeIdFor(mix.seed, request.idempotencyKey);
      return decision.status === 'approved'
        ? { kind: 'approved', chargeId }
        : {
            kind: 'declined',
            chargeId,
            code: decision.code,
            reversible: decision.reversible,
            message: declineMessage(decision.code),
          };
    },
    lookup: async () => ({ kind: 'not_found' }),
  };
}

/** No queue: completing a job is free and always holds (nothing can take a job from this process). */
const noQueue = {
  complete: async (_queue: string, jobs: Array<{ id: string }>) => ({ settled: jobs.map((job) => job.id) }),
  insert: async () => {
    throw new Error('the ceiling enqueues no jobs (back-billing and webhooks are off here)');
  },
} as unknown as PgBoss;

const deps: ChargeDeps = {
  config,
  pool,
  boss: noQueue,
  log,
  now: () => new Date(),
  gateway:
    gatewayUrl === undefined || gatewayUrl === ''
      ? inProcessGateway({
          declineRate: Number(declineRate),
          irreversibleShare: Number(irreversibleShare),
          seed: Number(seed),
        })
      : createHttpGateway({ url: gatewayUrl, timeoutMs: 10_000, log }),
};
if (config.gateway.maxConcurrency > 0) await ensureGatewaySlots(pool, config.gateway.maxConcurrency);

const noAbort = new AbortController().signal;
let next = Number(first);
const end = Number(last);
let charged = 0;
let declined = 0;
/** When each batch finished (epoch ms) and how many charges it settled: the steady-state window's input. */
const completions: Array<[number, number]> = [];

async function chargeBatch(ids: number[]): Promise<void> {
  const jobs: ChargeJob[] = ids.map((recorrenciaId) => ({
    id: randomUUID(),
    retryCount: 0,
    signal: noAbort,
    expireInSeconds: config.charges.hardLimitSeconds,
    data: { recorrenciaId, dataNegocio: businessDate, motivo: 'agendada' },
  }));
  const results = await chargeJobs(deps, jobs);
  const other = results.find((result) => result.status !== 'approved' && result.status !== 'declined');
  if (other !== undefined) throw new Error(`ceiling charge did not resolve: ${JSON.stringify(other)}`);
  charged += results.length;
  declined += results.filter((result) => result.status === 'declined').length;
  completions.push([performance.timeOrigin + performance.now(), results.length]);
}

const started = performance.now();
const cpuBefore = process.cpuUsage();
await Promise.all(
  Array.from({ length: shape.localConcurrency }, async () => {
    while (next <= end) {
      const ids: number[] = [];
      while (ids.length < shape.batchSize && next <= end) ids.push(next++);
      await chargeBatch(ids);
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
// This process's Postgres backends (opened at its first batch, so their CPU time is this run's).
const backends = await pool.connect((connection) =>
  rawQuery(connection, 'SELECT pid FROM pg_stat_activity WHERE application_name = $1', [applicationName]),
);
const postgresCpuSeconds = backends.reduce((sum, row) => sum + cpuSecondsOf(Number(row.pid)), 0);
await pool.end();
process.stdout.write(
  `${JSON.stringify({ charged, declined, seconds, completions, processCpuSeconds: (cpu.user + cpu.system) / 1e6, postgresCpuSeconds })}\n`,
);
