// Through PgBouncer in transaction mode, which may send one client connection's successive statements to
// different server connections: a periodic task's run still excludes every other run of its (task, date),
// and its lock ends with the run. Migrations go through it too.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { LOCK_TRANSACTION_UNTIMED } from '../../src/db/task-runs.ts';
import { migrate, MIGRATIONS_DIR } from '../../src/db/migrator.ts';
import type { PeriodicOutcome } from '../../src/tasks/periodic-runner.ts';
import type { PeriodicTask, TaskDeps } from '../../src/tasks/task.ts';
import { advisoryLocks, createMigratedDatabase, query } from '../helpers/database.ts';
import { gatedTask, returnsWithin, runnerDeps, runOn } from '../helpers/gated-task.ts';
import { silentLog } from '../helpers/harness.ts';
import { startPgBouncer } from '../helpers/pgbouncer.ts';

const DATE = '2031-05-05';

function run(task: PeriodicTask, deps: TaskDeps, force = false): Promise<PeriodicOutcome> {
  return runOn(task, deps, DATE, force);
}

t.test(
  'a task run holds its lock through a transaction-mode pooler, and releases it at the end',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // Short transaction timeouts on the database (PgBouncer drops the pool's own settings at log-in, so these
    // apply): the lock's transaction, idle for the whole run, must outlive them.
    const name = new URL(url).pathname.slice(1);
    const timeouts = await query<{ name: string }>(url, `SELECT name FROM pg_settings WHERE name = ANY($1)`, [
      [...LOCK_TRANSACTION_UNTIMED],
    ]);
    for (const { name: setting } of timeouts) {
      await query(url, `ALTER DATABASE "${name}" SET ${setting} = '300ms'`);
    }
    const bounced = await startPgBouncer(t, url, { poolMode: 'transaction', poolSize: 2 });
    const viaPooler = await runnerDeps(t, bounced);
    const direct = await runnerDeps(t, url);
    const gated = gatedTask();

    t.teardown(() => gated.release());
    const first = run(gated.task, viaPooler);
    await gated.firstEntered;
    // Not synchronisation: the run stays idle past those timeouts before anyone else tries the lock.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    t.match(
      await returnsWithin(run(gated.task, viaPooler), 10_000),
      { status: 'skipped', reason: 'run_in_progress' },
      'via the pooler',
    );
    t.match(
      await returnsWithin(run(gated.task, direct), 10_000),
      { status: 'skipped', reason: 'run_in_progress' },
      'directly',
    );
    t.same(
      (await advisoryLocks(url)).map((lock) => lock.granted),
      [true],
      'one lock, held by the running run',
    );
    gated.release();
    t.match(await first, { status: 'succeeded', counts: { feitas: 1 } });
    t.equal(gated.state.peakInside, 1, 'never two runs at once');

    t.same(await advisoryLocks(url), [], 'no lock left on any server connection');
    t.match(await run(gated.task, direct, true), { status: 'succeeded' }, 'a forced rerun directly');
    t.match(await run(gated.task, viaPooler, true), { status: 'succeeded' }, 'and via the pooler');
    const runs = await query<{ status: string }>(
      url,
      `SELECT status FROM execucoes_tarefas WHERE tarefa = 'limpar_recorrencias_antigas' ORDER BY id`,
    );
    t.same(
      runs.map((row) => row.status),
      ['sucesso', 'sucesso', 'sucesso'],
    );
  },
);

t.test('two migrators through a transaction-mode pooler apply a pending migration once', async (t) => {
  const url = await createMigratedDatabase(t);
  // Two server connections: a migrator waiting inside a transaction would pin the one the other needs.
  const bounced = await startPgBouncer(t, url, { poolMode: 'transaction', poolSize: 2 });
  const dir = await mkdtemp(join(tmpdir(), 'recorrencias-migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(fileURLToPath(MIGRATIONS_DIR), dir, { recursive: true });
  await writeFile(
    join(dir, '9999_lenta.sql'),
    'SELECT pg_sleep(0.5);\nCREATE TABLE migracao_lenta (id integer);\n',
  );
  const applied = await Promise.all([
    migrate(bounced, silentLog, pathToFileURL(`${dir}/`)),
    migrate(bounced, silentLog, pathToFileURL(`${dir}/`)),
  ]);
  t.same(applied.flat(), ['9999_lenta.sql'], 'one of them applied it, the other found nothing to do');
  t.same(await query(url, `SELECT count(*)::int AS n FROM migracao_lenta`), [{ n: 0 }]);
  t.same(await advisoryLocks(url), [], 'no lock left on any server connection');
});
