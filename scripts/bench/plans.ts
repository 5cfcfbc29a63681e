// `node scripts/bench/plans.ts <databaseUrl>`: EXPLAIN ANALYZE of the hot statements of the morning run, as
// the service issues them: the real query functions and pg-boss calls run on a connection whose statements
// are prefixed with EXPLAIN, inside one transaction that is rolled back (nothing is left changed). Run it on a
// database holding the morning's charge jobs (`seed`, then `run processar_recorrencias_do_dia` with no worker
// running) to see the plans at that size; the README's "Performance" section shows them at 1,000,000
// recurrences with a month of attempt history (one attempt each): with no history at all the planner reads
// the (empty) attempts table sequentially, which is the right plan for an empty table.
import { createPool, type DatabaseTransactionConnection, type Interceptor } from 'slonik';
import { loadConfig } from '../../src/config.ts';
import {
  insertAttempts,
  lockChargeCandidates,
  readDeclineFacts,
  recordApprovals,
  recordDeclines,
} from '../../src/db/charge-batch.ts';
import { insertCheckoutEvents } from '../../src/db/eventos-checkout.ts';
import { rawQuery } from '../../src/db/raw-query.ts';
import { findChargeablePage } from '../../src/db/recorrencias.ts';
import type { IsoDate } from '../../src/domain/dates.ts';
import { attemptKey } from '../../src/domain/identifiers.ts';
import { createLogger } from '../../src/log.ts';
import { bossDb } from '../../src/queue/boss-executor.ts';
import { createBoss } from '../../src/queue/boss.ts';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { dueCharge, enqueueChargeJobs } from '../../src/tasks/charge/charge-jobs.ts';

const url = process.argv[2];
if (url === undefined) throw new Error('usage: plans.ts <databaseUrl>');
const BATCH = 64;

let explaining = false;
let plan: string[] = [];
const explain: Interceptor = {
  name: 'explain',
  transformQuery: (_context, query) =>
    explaining
      ? { ...query, sql: `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) ${query.sql}` }
      : query,
  transformRow: (_context, _query, row) => {
    if (explaining && typeof row['QUERY PLAN'] === 'string') plan.push(row['QUERY PLAN']);
    return row;
  },
};
const pool = await createPool(url, { interceptors: [explain], captureStackTrace: false });
const log = createLogger({ level: 'warn', format: 'json', role: 'plans' });
const boss = createBoss(loadConfig({ DATABASE_URL: url }), url, 'cli', log);
await boss.start();

/** Runs `statement` with EXPLAIN on and prints the plans of what it sent (the result it gets is the plan). */
async function show(title: string, statement: () => Promise<unknown>): Promise<void> {
  plan = [];
  explaining = true;
  try {
    await statement();
  } catch {
    // The caller got plan rows where it expected its own: what matters was printed before it noticed.
  } finally {
    explaining = false;
  }
  process.stdout.write(`-- ${title}\n${plan.join('\n')}\n\n`);
}

class Rollback extends Error {}

/** Runs `write` in a savepoint rolled back afterwards: its plan is shown, its rows are not kept. */
function rolledBack(
  tx: DatabaseTransactionConnection,
  write: (savepoint: DatabaseTransactionConnection) => Promise<unknown>,
): Promise<unknown> {
  return tx.transaction((savepoint) =>
    write(savepoint).then(() => {
      throw new Rollback();
    }),
  );
}

const [counts] = await pool.connect((connection) =>
  rawQuery(
    connection,
    `SELECT (SELECT count(*) FROM checkout_recorrencias)::int AS recurrences,
            (SELECT count(*) FROM pgboss.job WHERE name = $1 AND state = 'created')::int AS queued,
            (SELECT proxima_cobranca::text FROM checkout_recorrencias WHERE status = 'ativo'
             GROUP BY 1 ORDER BY count(*) DESC LIMIT 1) AS date`,
    [CHARGE_QUEUE],
  ),
);
const date = (counts?.date ?? '2031-03-10') as IsoDate;
process.stdout.write(
  `-- ${String(counts?.recurrences)} recurrences, ${String(counts?.queued)} charge jobs queued; business date ${date}\n\n`,
);

await pool
  .transaction(async (tx: DatabaseTransactionConnection) => {
    const middle = await rawQuery(
      tx,
      `SELECT id FROM checkout_recorrencias WHERE status = 'ativo' AND proxima_cobranca = $1::date
       ORDER BY id OFFSET (SELECT count(*) / 2 FROM checkout_recorrencias) LIMIT ${BATCH}`,
      [date],
    );
    const ids = middle.map((row) => Number(row.id));
    const cursor = { date, id: ids[0] ?? 0 };
    await show('fan-out: one page of 5,000 due recurrences after a keyset cursor (findChargeablePage)', () =>
      findChargeablePage(tx, 'due', date, cursor, 5_000),
    );
    await show('fan-out: insert a page of charge jobs (pg-boss insert, 64 shown)', () =>
      rolledBack(tx, (savepoint) =>
        enqueueChargeJobs(
          boss,
          ids.map((id) => dueCharge(id, date, 'retroativa')),
          { db: savepoint },
        ),
      ),
    );
    await show(`worker: fetch a batch of ${BATCH} charge jobs (pg-boss fetch)`, () =>
      boss.fetch(CHARGE_QUEUE, { batchSize: BATCH, db: bossDb(tx) }),
    );
    const jobs = (await boss.fetch(CHARGE_QUEUE, { batchSize: BATCH, db: bossDb(tx) })) ?? [];
    await show(`phase 1: lock ${BATCH} recurrences (lockChargeCandidates)`, () =>
      lockChargeCandidates(tx, ids),
    );
    const candidates = await lockChargeCandidates(tx, ids);
    const rows = candidates.map((candidate, i) => ({
      recurrenceId: Number(candidate.id),
      cycle: candidate.proxima_cobranca,
      attempt: candidate.ultima_tentativa + 1,
      key: attemptKey(Number(candidate.id), candidate.proxima_cobranca, candidate.ultima_tentativa + 1),
      amountCents: Number(candidate.valor_centavos),
      currency: candidate.moeda,
      cardToken: candidate.cartao_token,
      businessDate: date,
      jobId: jobs[i]?.id ?? '00000000-0000-0000-0000-000000000000',
      clearsRetry: false,
    }));
    await show(`phase 1: insert ${BATCH} attempts (insertAttempts)`, () =>
      rolledBack(tx, (savepoint) => insertAttempts(savepoint, rows)),
    );
    const attempts = await insertAttempts(tx, rows);
    await show(`phase 3: complete ${jobs.length} jobs fenced to their attempts (pg-boss complete)`, () =>
      boss.complete(
        CHARGE_QUEUE,
        jobs.map((job) => ({ id: job.id, retryCount: 0 })),
        { status: 'approved' },
        { db: bossDb(tx) },
      ),
    );
    await show(`phase 3 (declines): read ${BATCH} attempts' decline facts (readDeclineFacts)`, () =>
      readDeclineFacts(
        tx,
        attempts.map((attempt) => Number(attempt.id)),
      ),
    );
    await show(`phase 3 (declines): record ${BATCH} declines and plan their retries (recordDeclines)`, () =>
      rolledBack(tx, (savepoint) =>
        recordDeclines(
          savepoint,
          attempts.map((attempt) => ({
            attemptId: Number(attempt.id),
            recurrenceId: Number(attempt.recorrencia_id),
            gatewayRef: `plan-${attempt.id}`,
            code: '51',
            reversible: true,
            message: 'insufficient funds',
            retryOn: date,
            holdReason: null,
          })),
        ),
      ),
    );
    await show(`phase 3: record ${BATCH} approvals and advance the recurrences (recordApprovals)`, () =>
      recordApprovals(
        tx,
        attempts.map((attempt) => ({
          attemptId: Number(attempt.id),
          recurrenceId: Number(attempt.recorrencia_id),
          gatewayRef: `plan-${attempt.id}`,
          nextCycle: date,
        })),
      ),
    );
    await show(`phase 3: record ${BATCH} checkout events (insertCheckoutEvents)`, () =>
      insertCheckoutEvents(
        tx,
        attempts.map((attempt) => ({
          type: 'cobranca_aprovada' as const,
          recurrenceId: Number(attempt.recorrencia_id),
          attemptId: Number(attempt.id),
        })),
        'registrado',
      ),
    );
    throw new Rollback();
  })
  .catch((error: unknown) => {
    if (!(error instanceof Rollback)) throw error;
  });
await boss.stop({ graceful: false });
await pool.end();
