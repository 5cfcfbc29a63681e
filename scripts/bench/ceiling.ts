// The same-run ceiling of the benchmark: the charge protocol's SQL issued straight to Postgres, with no queue
// and no gateway, by one process shaped like a worker (the same fetch loops, batch size and pool). Per batch:
// phase 1 (lock the recurrences, insert the attempts), the gateway-slot statements when the cap is on, and
// phase 3 (record the approvals and their checkout events) — the statements the worker runs, minus pg-boss.
// With a gateway URL it also makes each charge's gateway call between the phases, as the worker does (every
// outcome is recorded as an approval: the cost being measured is the call's), which separates what the
// gateway call costs from what the queue costs.
// Usage: node scripts/bench/ceiling.ts <databaseUrl> <firstId> <lastId> <date> <concurrency> <poolSize> <slots>
//        [gatewayUrl]
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../src/config.ts';
import { insertAttempts, lockChargeCandidates, recordApprovals } from '../../src/db/charge-batch.ts';
import type { Attempt } from '../../src/db/cobrancas.ts';
import { insertCheckoutEvents } from '../../src/db/eventos-checkout.ts';
import { freeGatewaySlots, takeGatewaySlots } from '../../src/db/gateway-slots.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { rawQuery } from '../../src/db/raw-query.ts';
import { nextCycle } from '../../src/domain/calendar.ts';
import { attemptKey } from '../../src/domain/identifiers.ts';
import { createHttpGateway } from '../../src/gateway/http-gateway.ts';
import { createLogger } from '../../src/log.ts';
import { chargeWorkShape } from '../../src/tasks/charge/charge-worker.ts';
import { chargeRequest } from '../../src/tasks/charge/gateway-call.ts';
import { cpuSecondsOf } from './system.ts';

const [url, first, last, date, concurrency, poolSize, slots, gatewayUrl] = process.argv.slice(2);
if (url === undefined || date === undefined)
  throw new Error('usage: ceiling.ts <url> <firstId> <lastId> <date> <concurrency> <poolSize> <slots>');
const shape = chargeWorkShape(loadConfig({ WORKER_CONCURRENCY: concurrency }));
const pool = await createDbPool(url, {
  maxConnections: Number(poolSize),
  applicationName: `recorrencias:bench-ceiling:${process.pid}`,
});
const gateway =
  gatewayUrl === undefined || gatewayUrl === ''
    ? null
    : createHttpGateway({
        url: gatewayUrl,
        timeoutMs: 10_000,
        log: createLogger({ level: 'warn', format: 'json', role: 'bench-ceiling' }),
      });
const noAbort = new AbortController().signal;
let next = Number(first);
const end = Number(last);
let charged = 0;

async function chargeBatch(ids: number[]): Promise<void> {
  const jobIds = new Map(ids.map((id) => [id, randomUUID()]));
  const prepared = await pool.transaction(async (tx) => {
    const candidates = await lockChargeCandidates(tx, ids);
    const attempts = await insertAttempts(
      tx,
      candidates.map((candidate) => ({
        recurrenceId: candidate.id,
        cycle: candidate.proxima_cobranca,
        attempt: candidate.ultima_tentativa + 1,
        key: attemptKey(candidate.id, candidate.proxima_cobranca, candidate.ultima_tentativa + 1),
        amountCents: candidate.valor_centavos,
        currency: candidate.moeda,
        cardToken: candidate.cartao_token,
        businessDate: date as string,
        jobId: jobIds.get(candidate.id) as string,
        clearsRetry: false,
      })),
    );
    return { candidates: new Map(candidates.map((candidate) => [candidate.id, candidate])), attempts };
  });
  const taken = Number(slots) > 0 ? await takeGatewaySlots(pool, [...jobIds.values()], 30_000) : [];
  await callGateway(prepared.attempts);
  await freeGatewaySlots(pool, taken);
  await pool.transaction(async (tx) => {
    const recorded = await recordApprovals(
      tx,
      prepared.attempts.map((attempt) => ({
        attemptId: attempt.id,
        recurrenceId: attempt.recorrencia_id,
        gatewayRef: `ceiling-${attempt.id}`,
        nextCycle: nextCycle(attempt.ciclo, prepared.candidates.get(attempt.recorrencia_id) as never),
      })),
    );
    await insertCheckoutEvents(
      tx,
      recorded.map((row) => ({
        type: 'cobranca_aprovada' as const,
        recurrenceId: row.recorrencia_id,
        attemptId: row.attempt_id,
      })),
      'registrado',
    );
    charged += recorded.length;
  });
}

async function callGateway(attempts: ReadonlyArray<Attempt>): Promise<void> {
  if (gateway === null) return;
  await Promise.all(attempts.map((attempt) => gateway.charge(chargeRequest(attempt), noAbort)));
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
  rawQuery(connection, 'SELECT pid FROM pg_stat_activity WHERE application_name = $1', [
    `recorrencias:bench-ceiling:${process.pid}`,
  ]),
);
const postgresCpuSeconds = backends.reduce((sum, row) => sum + cpuSecondsOf(Number(row.pid)), 0);
await pool.end();
process.stdout.write(
  `${JSON.stringify({ charged, seconds, processCpuSeconds: (cpu.user + cpu.system) / 1e6, postgresCpuSeconds })}\n`,
);
