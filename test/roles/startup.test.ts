// How roles start and stop as deployed: fail closed on bad configuration, refuse an unmigrated database,
// wait for a database that is down or refuses more connections, and stop gracefully on SIGTERM.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { freePort, makeTempDataDir, startEmbeddedPostgres } from '../../src/dev/embedded-postgres.ts';
import {
  adminUrl,
  createEmptyDatabase,
  createLimitedRole,
  createMigratedDatabase,
  query,
} from '../helpers/database.ts';
import { sql } from 'slonik';
import { z } from 'zod';
import { createDbPool } from '../../src/db/pool.ts';
import { PERIODIC_TASKS } from '../../src/queue/task-names.ts';
import { logMessage, startService } from '../helpers/processes.ts';

const TOKEN = 'test-token-0123456789abcdef';
// Nothing listens there: these tests never reach a charge.
const GATEWAY_URL = 'http://127.0.0.1:9';

t.test('without DATABASE_URL every database role refuses to start and names the variable', async (t) => {
  for (const role of ['migrate', 'worker', 'scheduler', 'admin']) {
    const service = startService(t, [role], { ADMIN_TOKEN: TOKEN });
    const { code } = await service.exited;
    t.equal(code, 2, `${role} exits with the usage code`);
    t.match(service.stderr(), /DATABASE_URL: required/, `${role} names DATABASE_URL`);
  }
});

t.test('an invalid cron or time zone is refused at start with the variable named', async (t) => {
  const url = 'postgres://postgres@127.0.0.1:1/none';
  const cron = startService(t, ['scheduler'], {
    DATABASE_URL: url,
    CRON_RETENTAR_COBRANCAS_FALHADAS: '61 10 * * *',
  });
  t.equal((await cron.exited).code, 2);
  t.match(cron.stderr(), /CRON_RETENTAR_COBRANCAS_FALHADAS/);
  const zone = startService(t, ['worker'], { DATABASE_URL: url, BUSINESS_TIME_ZONE: 'Mars/Olympus_Mons' });
  t.equal((await zone.exited).code, 2);
  t.match(zone.stderr(), /BUSINESS_TIME_ZONE: not a known IANA time zone/);
});

t.test(
  'a worker refuses to start without GATEWAY_URL: it never falls back to the fake gateway',
  async (t) => {
    const worker = startService(t, ['worker'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    t.equal((await worker.exited).code, 2);
    t.match(worker.stderr(), /GATEWAY_URL: required for workers/);
  },
);

t.test('dev on a named database needs a real gateway or --fake-gateway', async (t) => {
  const dev = startService(t, ['dev'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  t.equal((await dev.exited).code, 2);
  t.match(dev.stderr(), /DATABASE_URL is set and GATEWAY_URL is not: dev would charge that database/);
  const typo = startService(t, ['dev', '--fake-gatway'], {
    DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
  });
  t.equal((await typo.exited).code, 2);
  t.match(typo.stderr(), /unknown option --fake-gatway/);
});

t.test('a production worker refuses to start with test hooks armed', async (t) => {
  const worker = startService(t, ['worker'], {
    DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
    GATEWAY_URL,
    NODE_ENV: 'production',
    RECORRENCIAS_TEST_MUTANTS: 'no_fence',
  });
  t.equal((await worker.exited).code, 2);
  t.match(worker.stderr(), /test hooks armed \(mutant:no_fence\), refused with NODE_ENV=production/);
});

t.test('the admin role refuses to start without a token outside development mode', async (t) => {
  const admin = startService(t, ['admin'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  t.equal((await admin.exited).code, 2);
  t.match(admin.stderr(), /ADMIN_TOKENS: required/);
});

t.test('a worker started before migrate refuses to run and says why', async (t) => {
  const url = await createEmptyDatabase(t);
  const worker = startService(t, ['worker'], { DATABASE_URL: url, GATEWAY_URL });
  const { code } = await worker.exited;
  t.equal(code, 3, 'exits with the not-migrated code');
  const fatal = await worker.waitForLog((line) => line.level === 60);
  t.match(String(fatal.msg), /not migrated.*run `node dist\/main\.js migrate` first/);
});

t.test('a database set to another DateStyle is refused: dates would be misread', async (t) => {
  const url = await createMigratedDatabase(t);
  const name = new URL(url).pathname.slice(1);
  await query(adminUrl(), `ALTER DATABASE "${name}" SET DateStyle = 'SQL, DMY'`);
  const worker = startService(t, ['worker'], { DATABASE_URL: url, GATEWAY_URL });
  t.equal((await worker.exited).code, 2, 'exits with the bad-configuration code');
  t.match(worker.stderr(), /DateStyle is 'SQL, DMY' \(set by: database\).*set it to ISO/);
  const migrate = startService(t, ['migrate'], { DATABASE_URL: url });
  t.equal((await migrate.exited).code, 2, 'migrate refuses it too');
  t.match(migrate.stderr(), /DateStyle is 'SQL, DMY'/);
  const check = startService(t, ['check'], { DATABASE_URL: url });
  t.equal((await check.exited).code, 1);
  t.match(check.stdout(), /✗ session settings: Postgres DateStyle is 'SQL, DMY'/);
  // A session changed after start-up: a date read through the pool fails instead of being misread.
  const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'test' });
  t.teardown(() => pool.end());
  await t.rejects(
    pool.oneFirst(sql.type(z.object({ d: z.string() }))`SELECT '2031-03-25'::date AS d`),
    /Postgres sent the date '25\/03\/2031', not in ISO form/,
  );
  await t.rejects(
    pool.oneFirst(sql.type(z.object({ t: z.date() }))`SELECT '2031-03-10 12:00Z'::timestamptz AS t`),
    /Postgres sent the timestamp '10\/03\/2031 .*', not in ISO form/,
    'a timestamp too: it would read as October 3rd',
  );
  await query(adminUrl(), `ALTER DATABASE "${name}" RESET DateStyle`);
  const fixed = startService(t, ['check'], { DATABASE_URL: url });
  t.equal((await fixed.exited).code, 0, 'fine again once reset');
});

t.test('a worker started while Postgres is down waits, then comes up by itself', async (t) => {
  // A migrated database whose server is down when the worker starts (a restart or an outage).
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/recorrencias`;
  const dataDir = await makeTempDataDir('recorrencias-down-');
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const postgres = await startEmbeddedPostgres({ dataDir: join(dataDir, 'data'), port });
  t.teardown(() => postgres.stop());
  await postgres.createDatabase('recorrencias');
  const migrate = startService(t, ['migrate'], { DATABASE_URL: url });
  t.equal((await migrate.exited).code, 0, migrate.stdout());
  await postgres.stop();

  const worker = startService(t, ['worker'], { DATABASE_URL: url, GATEWAY_URL });
  const waiting = await worker.waitForLog(logMessage('database unreachable, waiting'));
  t.equal(waiting.level, 40, 'logged as a warning');
  await postgres.restart();

  await worker.waitForLog(logMessage('worker started'), 60_000);
  t.ok(worker.lines.some(logMessage('database reachable')), 'logs when the database is back');
  const { code } = await worker.stop('SIGTERM');
  t.equal(code, 0);
});

t.test('a role whose login the database refuses exits at once and says which variable to fix', async (t) => {
  const url = new URL(adminUrl());
  url.pathname = '/no_such_database_for_startup_test';
  for (const role of ['migrate', 'worker']) {
    const service = startService(t, [role], {
      DATABASE_URL: url.toString(),
      GATEWAY_URL,
      ADMIN_TOKEN: TOKEN,
    });
    t.equal((await service.exited).code, 2, `${role} exits with the usage code`);
    t.match(
      service.stderr(),
      /DATABASE_URL: the database refused the connection \(3D000: database "no_such_database_for_startup_test" does not exist\)/,
    );
    t.notMatch(service.stdout(), /database unreachable, waiting/, 'no endless wait');
  }
});

t.test('a worker whose connections Postgres refuses takes no job until it holds all of them', async (t) => {
  // A login role whose CONNECTION LIMIT is below the worker's pool.
  const url = await createMigratedDatabase(t);
  const { role, url: limitedUrl } = await createLimitedRole(t, url, 3);

  const worker = startService(t, ['worker'], {
    DATABASE_URL: limitedUrl,
    GATEWAY_URL,
    DB_POOL_SIZE: '5',
  });
  const refused = await worker.waitForLog(
    logMessage('database refused more connections during start-up, waiting'),
  );
  t.equal(refused.level, 40, 'logged as a warning');
  t.match(JSON.stringify(refused.err), /too many connections/, 'with what Postgres said');
  t.notOk(worker.lines.some(logMessage('worker started')), 'and it has not started');
  const heldWhileRefused = await query<{ n: number }>(
    adminUrl(),
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = 'recorrencias:worker'`,
    [role],
  );
  t.ok((heldWhileRefused[0]?.n ?? 0) < 5, 'a refused attempt does not keep a full pool');

  await query(adminUrl(), `ALTER ROLE ${role} CONNECTION LIMIT 20`);
  await worker.waitForLog(logMessage('worker started'), 60_000);
  const held = await query<{ n: number }>(
    adminUrl(),
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = 'recorrencias:worker'`,
    [role],
  );
  t.equal(held[0]?.n, 5, 'once started it holds DB_POOL_SIZE connections');
  const { code } = await worker.stop('SIGTERM');
  t.equal(code, 0);
});

t.test('each role stops gracefully on SIGTERM and exits 0', async (t) => {
  const url = await createMigratedDatabase(t);
  const env = { DATABASE_URL: url, ADMIN_TOKEN: TOKEN, ADMIN_PORT: '0', GATEWAY_URL };
  const roles = [
    { role: 'worker', ready: 'worker started' },
    { role: 'scheduler', ready: 'scheduler started' },
    { role: 'admin', ready: 'admin server listening' },
    { role: 'all', ready: 'scheduler started' },
  ];
  for (const { role, ready } of roles) {
    const service = startService(t, [role], env);
    await service.waitForLog(logMessage(ready));
    const { code, signal } = await service.stop('SIGTERM');
    t.same({ code, signal }, { code: 0, signal: null }, `${role} exits 0`);
    t.ok(service.lines.some(logMessage('stopped')), `${role} logs that it stopped`);
  }
});

t.test('a scheduler given a daily task too late for its run-late alert says so at start-up', async (t) => {
  const url = await createMigratedDatabase(t);
  const scheduler = startService(t, ['scheduler'], {
    DATABASE_URL: url,
    CRON_PROCESSAR_RECORRENCIAS_DO_DIA: '40 23 * * *',
  });
  await scheduler.waitForLog(logMessage('scheduler started'));
  const warnings = scheduler.lines.filter(logMessage(/cannot fire before midnight/));
  t.match(warnings, [
    {
      level: 40,
      task: 'processar_recorrencias_do_dia',
      time: '23:40',
      alert: 'RecorrenciasDailyRunLate',
      msg: /schedule daily tasks at 23:27 or earlier/,
    },
  ]);
  t.equal(warnings.length, 1, 'only the late task');
  await scheduler.stop('SIGTERM');
});

t.test('a worker whose queue settings differ from what migrate stored says so at start-up', async (t) => {
  const url = await createMigratedDatabase(t);
  const worker = startService(t, ['worker'], {
    DATABASE_URL: url,
    GATEWAY_URL,
    TASK_RETRY_DELAY_SECONDS: '5',
  });
  const warning = await worker.waitForLog(
    logMessage(/queue policies differ from this configuration/),
    30_000,
  );
  t.match(warning, { level: 40, msg: /run migrate to apply them/ });
  t.same(
    warning.drift,
    PERIODIC_TASKS.map((task) => `${task}: retryDelay 30 (configured 5)`),
    'names each queue, option, stored and configured value',
  );
  await worker.waitForLog(logMessage('worker started'));
  t.match(
    await worker.waitForLog(logMessage(/^NOTICE_WEBHOOK_URL is not set/), 30_000),
    { level: 40, msg: /records seller notices in avisos_vendedores, not sent/ },
    'and that, without NOTICE_WEBHOOK_URL, a notice run here would not send the notices',
  );
  const check = startService(t, ['check'], {
    DATABASE_URL: url,
    LOG_LEVEL: 'warn',
    TASK_RETRY_DELAY_SECONDS: '5',
  });
  t.equal((await check.exited).code, 0, 'a warning, not a failure');
  t.match(
    check.stdout(),
    '! queues exist with their policies: stored policies differ from this configuration (run migrate to apply it): processar_recorrencias_do_dia: retryDelay 30 (configured 5)',
    'check shows it as well',
  );
});
