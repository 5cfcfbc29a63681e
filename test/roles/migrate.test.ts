// `migrate` as deployed: two at once on an empty database, then what the database holds.
import t from 'tap';
import { createEmptyDatabase, query } from '../helpers/database.ts';
import { logMessage, startService } from '../helpers/processes.ts';
import { readMigrationFiles } from '../../src/db/migrator.ts';
import { EXPECTED_BOSS_SCHEMA_VERSION } from '../../src/db/schema-check.ts';

t.test(
  'two migrate processes at once: one applies, the other finds nothing to do, both exit 0',
  async (t) => {
    const url = await createEmptyDatabase(t);
    const first = startService(t, ['migrate'], { DATABASE_URL: url });
    const second = startService(t, ['migrate'], { DATABASE_URL: url });
    const [a, b] = await Promise.all([first.exited, second.exited]);
    t.same(
      [a.code, b.code],
      [0, 0],
      `${first.stdout()}${first.stderr()}${second.stdout()}${second.stderr()}`,
    );

    const outcomes = await Promise.all(
      [first, second].map((process) =>
        process.waitForLog(logMessage(/^database (migrated|already up to date)$/)),
      ),
    );
    const applied = outcomes.map((line) => (line.applied as string[]).length).sort();
    const files = await readMigrationFiles();
    t.same(applied, [0, files.length], 'exactly one process applied the migrations');

    const recorded = await query<{ versao: number }>(url, 'SELECT versao FROM migracoes ORDER BY versao');
    t.same(
      recorded.map((row) => row.versao),
      files.map((file) => file.version),
    );
    const [version] = await query<{ version: number }>(url, 'SELECT version FROM pgboss.version');
    t.equal(
      version?.version,
      EXPECTED_BOSS_SCHEMA_VERSION,
      'pg-boss schema installed at the expected version',
    );
  },
);

t.test('the queues exist with the policies from configuration', async (t) => {
  const url = await createEmptyDatabase(t);
  const migrate = startService(t, ['migrate'], {
    DATABASE_URL: url,
    CHARGE_TIME_LIMIT_SECONDS: '45',
    TASK_RETRY_LIMIT: '5',
    CHARGE_BACKLOG_WARNING: '250000',
  });
  t.equal((await migrate.exited).code, 0);
  const queues = await query<{
    name: string;
    expire_seconds: number;
    retry_limit: number;
    dead_letter: string | null;
    heartbeat_seconds: number | null;
    warning_queued: number;
  }>(
    url,
    'SELECT name, expire_seconds, retry_limit, dead_letter, heartbeat_seconds, warning_queued FROM pgboss.queue ORDER BY name',
  );
  const byName = new Map(queues.map((queue) => [queue.name, queue]));
  for (const task of [
    'processar_recorrencias_do_dia',
    'retentar_cobrancas_falhadas',
    'notificar_recorrencias_hold',
    'limpar_recorrencias_antigas',
  ]) {
    t.equal(byName.get(task)?.expire_seconds, 300, `${task}: hard limit is the job expiry`);
    t.equal(byName.get(task)?.retry_limit, 5, `${task}: retry limit from TASK_RETRY_LIMIT`);
  }
  const charge = byName.get('cobrar_recorrencia');
  t.equal(charge?.expire_seconds, 45, 'charge jobs have their own short expiry');
  t.equal(charge?.heartbeat_seconds, 10, 'charge jobs heartbeat');
  t.equal(charge?.dead_letter, 'cobrar_recorrencia_dlq');
  t.equal(charge?.warning_queued, 250_000, 'backlog warning threshold from CHARGE_BACKLOG_WARNING');

  const rerun = startService(t, ['migrate'], { DATABASE_URL: url, CHARGE_TIME_LIMIT_SECONDS: '60' });
  t.equal((await rerun.exited).code, 0);
  const [updated] = await query<{ expire_seconds: number; warning_queued: number }>(
    url,
    `SELECT expire_seconds, warning_queued FROM pgboss.queue WHERE name = 'cobrar_recorrencia'`,
  );
  t.equal(updated?.expire_seconds, 60, 'a later migrate brings queue options in line with the configuration');
  t.equal(updated?.warning_queued, 2_000_000, 'the backlog threshold back to its default');
});
