// The hand-built slonik query token (src/db/raw-query.ts) and pg-boss's statements run through it: it depends on
// slonik's internal token shape, so a slonik upgrade that changes it fails here first, not in the charge path.
import t from 'tap';
import { CHARGE_QUEUE } from '../../src/queue/task-names.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { rawQuery } from '../../src/db/raw-query.ts';
import { bossDb } from '../../src/queue/boss-executor.ts';
import { query } from '../helpers/database.ts';
import { createHarness } from '../helpers/harness.ts';

t.test('raw SQL text runs with $n values and returns its rows as the driver parsed them', async (t) => {
  const { url } = await createHarness(t);
  const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'raw-query-test' });
  t.teardown(() => pool.end());
  const rows = await rawQuery(pool, 'SELECT $1::int + 1 AS n, $2::text AS s, $3::jsonb AS j', [
    41,
    'texto',
    JSON.stringify({ a: [1] }),
  ]);
  t.same(rows, [{ n: 42, s: 'texto', j: { a: [1] } }]);
  await t.rejects(rawQuery(pool, 'SELECT nothing_here'), /nothing_here/, 'a SQL error rejects');
});

t.test("pg-boss's statements join our transaction: rolled back with it, committed with it", async (t) => {
  const { url, pool, boss } = await createHarness(t);
  const data = { recorrenciaId: 1, dataNegocio: '2031-05-10', motivo: 'teste' };
  await t.rejects(
    pool.transaction(async (tx) => {
      await boss.send(CHARGE_QUEUE, data, { db: bossDb(tx) });
      throw new Error('rolled back on purpose');
    }),
    /rolled back on purpose/,
  );
  const count = async () =>
    Number((await query(url, `SELECT count(*) AS n FROM pgboss.job WHERE name = $1`, [CHARGE_QUEUE]))[0]?.n);
  t.equal(await count(), 0, 'the job sent inside the rolled-back transaction is gone');

  const id = await pool.transaction((tx) => boss.send(CHARGE_QUEUE, data, { db: bossDb(tx) }));
  t.type(id, 'string');
  t.equal(await count(), 1, 'the job sent inside the committed transaction is there');
  const [job] = await boss.fetch(CHARGE_QUEUE);
  t.equal(job?.id, id);
  const response = await pool.transaction((tx) =>
    boss.complete(CHARGE_QUEUE, job === undefined ? [] : [job], { ok: true }, { db: bossDb(tx) }),
  );
  t.equal((response as { affected?: number }).affected, 1, 'the completion reports the row it settled');
  const [row] = await query(url, `SELECT state, output FROM pgboss.job WHERE id = $1`, [id]);
  t.same(row, { state: 'completed', output: { ok: true } });
});
