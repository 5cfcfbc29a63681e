// The migration runner on its own, with migration folders made up for the test.
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import t, { type Test } from 'tap';
import { migrate } from '../../src/db/migrator.ts';
import { isAppError } from '../../src/errors.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { createEmptyDatabase, query } from '../helpers/database.ts';

const log = pino({ level: 'silent' });

async function folder(t: Test, files: Record<string, string>): Promise<URL> {
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return pathToFileURL(`${dir}/`);
}

t.test('applies pending files in order, once', async (t) => {
  const url = await createEmptyDatabase(t);
  const dir = await folder(t, {
    '0001_a.sql': 'CREATE TABLE a (id int);',
    '0002_b.sql': 'CREATE TABLE b (id int); INSERT INTO b VALUES (1);',
  });
  t.same(await migrate(url, log, dir), ['0001_a.sql', '0002_b.sql']);
  t.same(await migrate(url, log, dir), [], 'a second run applies nothing');
  t.same(await query(url, 'SELECT id FROM b'), [{ id: 1 }], 'multi-statement files run whole');
});

t.test('refuses to run when an applied file was edited, and changes nothing', async (t) => {
  const url = await createEmptyDatabase(t);
  const dir = await folder(t, { '0001_a.sql': 'CREATE TABLE a (id int);' });
  await migrate(url, log, dir);
  await writeFile(new URL('0001_a.sql', dir), 'CREATE TABLE a (id bigint);');
  await writeFile(new URL('0002_b.sql', dir), 'CREATE TABLE b (id int);');
  const error = await migrate(url, log, dir).catch((e: unknown) => e);
  t.ok(isAppError(error, 'MIGRATION_EDITED'), String(error));
  t.match(String((error as Error).message), /0001_a\.sql/);
  t.same(await query(url, `SELECT to_regclass('b') AS b`), [{ b: null }], 'the pending file was not applied');
});

t.test('refuses a database that has migrations this release does not know', async (t) => {
  const url = await createEmptyDatabase(t);
  await migrate(url, log, await folder(t, { '0001_a.sql': 'SELECT 1;', '0002_b.sql': 'SELECT 1;' }));
  const error = await migrate(url, log, await folder(t, { '0001_a.sql': 'SELECT 1;' })).catch(
    (e: unknown) => e,
  );
  t.ok(isAppError(error, 'MIGRATION_UNKNOWN'), String(error));
});

t.test('a failing file is rolled back and not recorded', async (t) => {
  const url = await createEmptyDatabase(t);
  const dir = await folder(t, {
    '0001_a.sql': 'CREATE TABLE a (id int);',
    '0002_b.sql': 'CREATE TABLE b (id int); SELECT * FROM no_such_table;',
  });
  await t.rejects(migrate(url, log, dir), /0002_b\.sql failed/);
  t.same(await query(url, 'SELECT versao FROM migracoes ORDER BY versao'), [{ versao: 1 }]);
  t.same(
    await query(url, `SELECT to_regclass('b') AS b`),
    [{ b: null }],
    'the failed file left nothing behind',
  );
});

t.test('two runners at once on the same folder: each file applied exactly once', async (t) => {
  const url = await createEmptyDatabase(t);
  const dir = await folder(t, {
    '0001_a.sql': 'CREATE TABLE a (id int);',
    '0002_slow.sql': 'SELECT pg_sleep(0.3); CREATE TABLE c (id int);',
  });
  const results = await Promise.all([migrate(url, log, dir), migrate(url, log, dir)]);
  t.same(results.map((applied) => applied.length).sort(), [0, 2]);
  t.same(await query(url, 'SELECT count(*)::int AS n FROM migracoes'), [{ n: 2 }]);
});

/** A connection holding an ACCESS SHARE lock on `table` (an open transaction that read it) until `release`. */
async function holdReadLock(url: string, table: string): Promise<{ release: () => Promise<void> }> {
  const holder = new pg.Client({ connectionString: url });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query(`SELECT count(*) FROM ${table}`);
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await holder.query('COMMIT');
    await holder.end();
  };
  return { release };
}

t.test(
  'a migration blocked by a long transaction gives up its lock wait, so readers pass, and retries',
  async (t) => {
    const url = await createEmptyDatabase(t);
    const dir = await folder(t, {
      '0001_a.sql': 'CREATE TABLE a (id int); INSERT INTO a VALUES (1);',
      '0002_b.sql': 'ALTER TABLE a ADD COLUMN b int;',
    });
    await migrate(
      url,
      log,
      await folder(t, { '0001_a.sql': 'CREATE TABLE a (id int); INSERT INTO a VALUES (1);' }),
    );
    const holder = await holdReadLock(url, 'a');
    t.teardown(holder.release);
    const retries: number[] = [];
    let readerDone: Promise<unknown> | undefined;
    const migrating = migrate(
      url,
      capturedLog('info', (record) => {
        if (record.msg !== 'migration gave up waiting for a lock: rolled back, trying again') return;
        retries.push(Number(record.attempt));
        // Between two tries a reader of the table is not queued behind the migration's lock request.
        if (retries.length === 1) readerDone = query(url, 'SELECT id FROM a');
        if (retries.length === 2) void holder.release();
      }).log,
      dir,
      { timeoutMs: 300, attempts: 50 },
    );
    // Without the lock timeout the migration would wait for the holder for ever: give up on it after 20 s.
    const deadline = setTimeout(() => void holder.release(), 20_000);
    t.teardown(() => clearTimeout(deadline));
    t.same(await migrating, ['0002_b.sql']);
    t.ok(retries.length >= 2, `tried again after giving up (${retries.length} retries logged)`);
    t.same(retries.slice(0, 2), [1, 2], 'each retry names its attempt');
    t.same(await readerDone, [{ id: 1 }], 'the reader started while the migration retried got its rows');
    t.same(
      await query(url, `SELECT b FROM a`),
      [{ b: null }],
      'the migration applied once the lock was free',
    );
    t.same(await query(url, 'SELECT count(*)::int AS n FROM migracoes'), [{ n: 2 }]);
  },
);

t.test(
  'a migration that cannot take its locks in its attempts fails, applies nothing, and says why',
  async (t) => {
    const url = await createEmptyDatabase(t);
    const first = { '0001_a.sql': 'CREATE TABLE a (id int);' };
    await migrate(url, log, await folder(t, first));
    const holder = await holdReadLock(url, 'a');
    t.teardown(holder.release);
    const dir = await folder(t, {
      ...first,
      '0002_b.sql': 'CREATE TABLE c (id int); ALTER TABLE a ADD COLUMN b int;',
    });
    await t.rejects(
      migrate(url, log, dir, { timeoutMs: 100, attempts: 2 }),
      /migration 0002_b\.sql failed: it could not take its locks in 2 tries of 100 ms .*MIGRATION_LOCK_TIMEOUT_MS/,
    );
    t.same(await query(url, 'SELECT versao FROM migracoes ORDER BY versao'), [{ versao: 1 }]);
    t.same(
      await query(url, `SELECT to_regclass('c') AS c`),
      [{ c: null }],
      'its earlier statements rolled back',
    );
  },
);
