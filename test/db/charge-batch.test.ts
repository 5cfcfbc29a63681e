// The set-based charge statements against a real Postgres: the approvals statement takes every recurrence
// lock (in id order) before it touches any attempt, the order the rest of the protocol keeps.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import t from 'tap';
import { insertAttempts, recordApprovals } from '../../src/db/charge-batch.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { attemptKey } from '../../src/domain/identifiers.ts';
import { createMigratedDatabase, query } from '../helpers/database.ts';
import { insertRecurrence } from '../helpers/harness.ts';
import { eventually } from '../helpers/processes.ts';

const CYCLE = '2031-05-10';

t.test('recordApprovals locks every recurrence before any attempt', async (t) => {
  const url = await createMigratedDatabase(t);
  const pool = await createDbPool(url, { maxConnections: 2, applicationName: 'approvals-under-test' });
  t.teardown(() => pool.end());
  const ids = [
    await insertRecurrence(pool, { proxima_cobranca: CYCLE }),
    await insertRecurrence(pool, { proxima_cobranca: CYCLE }),
  ];
  const attempts = await pool.transaction((tx) =>
    insertAttempts(
      tx,
      ids.map((id) => ({
        recurrenceId: id,
        cycle: CYCLE,
        attempt: 1,
        key: attemptKey(id, CYCLE, 1),
        amountCents: 4_990,
        currency: 'BRL',
        cardToken: 'tok_aprova_1',
        businessDate: CYCLE,
        jobId: randomUUID(),
        clearsRetry: false,
      })),
    ),
  );
  const [first, second] = attempts;
  if (first === undefined || second === undefined) throw new Error('attempts not created');

  // Another transaction holds the second recurrence (higher id): the statement must wait on it before it
  // has touched the first attempt.
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  t.teardown(() => holder.end());
  await holder.query('BEGIN');
  await holder.query('SELECT id FROM checkout_recorrencias WHERE id = $1 FOR UPDATE', [
    second.recorrencia_id,
  ]);

  const approving = pool.transaction((tx) =>
    recordApprovals(
      tx,
      attempts.map((attempt) => ({
        attemptId: attempt.id,
        recurrenceId: attempt.recorrencia_id,
        gatewayRef: `ch_${attempt.id}`,
        nextCycle: '2031-06-10',
      })),
    ),
  );
  await eventually(async () => {
    const waiting = await query(
      url,
      `SELECT 1 FROM pg_stat_activity WHERE application_name = 'approvals-under-test' AND wait_event_type = 'Lock'`,
    );
    return waiting.length > 0 ? true : undefined;
  }, 10_000);

  const probe = new pg.Client({ connectionString: url });
  await probe.connect();
  t.teardown(() => probe.end());
  await probe.query('BEGIN');
  const free = await probe
    .query('SELECT id FROM checkout_recorrencia_cobrancas WHERE id = $1 FOR UPDATE NOWAIT', [first.id])
    .then(
      () => true,
      () => false,
    );
  await probe.query('ROLLBACK');
  t.ok(free, 'the first attempt is not locked while the statement waits for a recurrence');

  await holder.query('ROLLBACK');
  const approved = await approving;
  t.same(approved.map((row) => row.status).sort(), ['ativo', 'ativo'], 'both approvals recorded');
  const statuses = await query<{ status: string }>(
    url,
    'SELECT status FROM checkout_recorrencia_cobrancas WHERE id = ANY($1) ORDER BY id',
    [attempts.map((attempt) => attempt.id)],
  );
  t.same(statuses, [{ status: 'aprovada' }, { status: 'aprovada' }]);
});
