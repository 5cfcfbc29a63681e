// The same-run ceiling of the benchmark: the charge protocol's SQL (phase 1 and phase 3 transactions, and the
// gateway-slot statements when the cap is on) issued straight to Postgres, with no queue and no gateway, by
// one process with the given pool and concurrency. The benchmark spawns as many of these as it has workers.
// It mirrors src/tasks/charge/charge-recurrence.ts statement for statement; keep the two in step.
// Usage: node scripts/bench/ceiling.ts <databaseUrl> <firstId> <lastId> <date> <concurrency> <poolSize> <slots>
import { randomUUID } from 'node:crypto';
import {
  findPendingAttempt,
  insertAttempt,
  insertSkippedCycles,
  lastAttemptNumber,
  resolveAttempt,
} from '../../src/db/cobrancas.ts';
import { freeGatewaySlot, takeGatewaySlot } from '../../src/db/gateway-slots.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { lockRecurrence, markCycleApproved } from '../../src/db/recorrencias.ts';
import { nextCycle, planCharge } from '../../src/domain/calendar.ts';
import { attemptKey } from '../../src/domain/identifiers.ts';

const [url, first, last, date, concurrency, poolSize, slots] = process.argv.slice(2);
if (url === undefined || date === undefined)
  throw new Error('usage: ceiling.ts <url> <firstId> <lastId> <date> <concurrency> <poolSize> <slots>');
const pool = await createDbPool(url, {
  maxConnections: Number(poolSize),
  applicationName: 'recorrencias:bench-ceiling',
});
let next = Number(first);
const end = Number(last);
let charged = 0;

async function chargeOne(id: number): Promise<void> {
  const jobId = randomUUID();
  const attempt = await pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, id);
    if (recurrence?.status !== 'ativo' || (await findPendingAttempt(tx, id)) !== null) return null;
    const plan = planCharge(recurrence.proxima_cobranca, date as string, recurrence, false);
    await insertSkippedCycles(tx, id, plan.skipped, plan.cycle, 'bench');
    const number = (await lastAttemptNumber(tx, id, plan.cycle)) + 1;
    return insertAttempt(tx, {
      recurrenceId: id,
      cycle: plan.cycle,
      attempt: number,
      key: attemptKey(id, plan.cycle, number),
      amountCents: recurrence.valor_centavos,
      currency: recurrence.moeda,
      cardToken: recurrence.cartao_token,
      businessDate: date as string,
      jobId,
    });
  });
  if (attempt === null) return;
  if (Number(slots) > 0) {
    const slot = await takeGatewaySlot(pool, jobId, 30_000);
    if (slot !== null) await freeGatewaySlot(pool, slot, jobId);
  }
  await pool.transaction(async (tx) => {
    const recurrence = await lockRecurrence(tx, id);
    if (
      recurrence === null ||
      !(await resolveAttempt(tx, attempt.id, { status: 'aprovada', gatewayRef: `ceiling-${id}` }))
    )
      return;
    await markCycleApproved(tx, id, { nextCycle: nextCycle(attempt.ciclo, recurrence), completed: false });
  });
  charged += 1;
}

const started = performance.now();
await Promise.all(
  Array.from({ length: Number(concurrency) }, async () => {
    while (next <= end) {
      const id = next;
      next += 1;
      await chargeOne(id);
    }
  }),
);
const seconds = (performance.now() - started) / 1000;
await pool.end();
process.stdout.write(`${JSON.stringify({ charged, seconds })}\n`);
