// A periodic task run whose lock connection ends mid-run (pg_terminate_backend, directly or behind a
// transaction-mode PgBouncer): the lock went with the connection, so the run stops, is recorded as failed and a
// new run takes over alone. A connection that ends after the run's work leaves the run's success standing.
import pino from 'pino';
import t, { type Test } from 'tap';
import type { TaskDeps } from '../../src/tasks/task.ts';
import { createMigratedDatabase, query } from '../helpers/database.ts';
import { gatedTask, returnsWithin, runnerDeps, runOn } from '../helpers/gated-task.ts';
import { startPgBouncer } from '../helpers/pgbouncer.ts';

const DATE = '2031-06-02';

/** Ends the server connection holding the run's advisory lock, as an operator or a failover would. */
async function terminateLockHolder(url: string): Promise<void> {
  const ended = await query<{ ended: boolean }>(
    url,
    `SELECT pg_terminate_backend(pid) AS ended FROM pg_locks WHERE locktype = 'advisory' AND granted`,
  );
  if (ended.length !== 1 || !ended[0]?.ended)
    throw new Error(`expected one lock holder, ended ${JSON.stringify(ended)}`);
}

/** Starts a gated run and, once it is inside, ends the server connection holding its lock. */
async function runThenEndItsLock(t: Test, deps: TaskDeps, url: string) {
  const gated = gatedTask();
  t.teardown(() => gated.release());
  const first = runOn(gated.task, deps, DATE);
  first.catch(() => {}); // its outcome is asserted by the caller; meanwhile it must not count as unhandled
  await gated.firstEntered;
  await terminateLockHolder(url);
  return { gated, first };
}

async function runStatuses(url: string) {
  return query<{ status: string; erro: string | null }>(
    url,
    `SELECT status, erro FROM execucoes_tarefas WHERE data_negocio = $1 ORDER BY id`,
    [DATE],
  );
}

for (const via of ['directly', 'through a transaction-mode PgBouncer'] as const) {
  t.test(`a run whose lock connection ends stops, and the next run takes over (${via})`, async (t) => {
    const url = await createMigratedDatabase(t);
    const target =
      via === 'directly' ? url : await startPgBouncer(t, url, { poolMode: 'transaction', poolSize: 2 });
    const lines: Array<{ level: number; msg: string; task?: string; err?: { message: string } }> = [];
    const log = pino(
      { level: 'error' },
      { write: (line: string) => lines.push(JSON.parse(line) as (typeof lines)[number]) },
    );
    const deps: TaskDeps = await runnerDeps(t, target, { TASK_LOCK_CHECK_SECONDS: '1' }, log);
    const { gated, first } = await runThenEndItsLock(t, deps, url);
    await t.rejects(
      returnsWithin(first, 10_000),
      { name: 'RunLockLostError', message: /lost the run lock/ },
      'the run stops within a couple of checks',
    );
    const [failed] = await runStatuses(url);
    t.equal(failed?.status, 'falha');
    t.match(failed?.erro, /lost the run lock/, 'the run record says why');
    t.match(
      lines.find((line) => /connection holding the run lock failed/.test(line.msg)),
      { task: 'limpar_recorrencias_antigas', err: { message: /terminat/i } },
      'the log names the task and the connection error that ended the lock',
    );

    gated.release();
    t.match(await runOn(gated.task, deps, DATE), { status: 'succeeded' }, 'not skipped: it redoes the run');
    t.equal(gated.state.peakInside, 1, 'never two runs at once');
    t.same(
      (await runStatuses(url)).map((row) => row.status),
      ['falha', 'sucesso'],
    );
    t.same(
      await query(url, `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`),
      [{ n: 0 }],
      'no lock left',
    );
  });
}

t.test(
  'a lock connection that ends after the run finished its work leaves the success standing',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // Checks far apart: the connection ends between two of them, and only the unlock meets the ended connection.
    const deps = await runnerDeps(t, url, { TASK_LOCK_CHECK_SECONDS: '300' });
    const { gated, first } = await runThenEndItsLock(t, deps, url);
    gated.release();
    t.match(await first, { status: 'succeeded', counts: { feitas: 1 } });
    t.same(await runStatuses(url), [{ status: 'sucesso', erro: null }]);
    t.match(await runOn(gated.task, deps, DATE), { status: 'skipped', reason: 'already_succeeded' });
  },
);
