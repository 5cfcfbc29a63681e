// A PgBouncer in front of a test database, for the tests of what holds through a connection pooler. Runs the
// Debian package's binary (`apt-get install pgbouncer`) with a throwaway configuration; stopped at teardown.
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Test } from 'tap';
import { freePort, makeTempDataDir, serverOwner } from '../../src/dev/embedded-postgres.ts';

export type PgBouncerOptions = { poolMode: 'session' | 'transaction'; poolSize: number };

const BINARY = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';

/** Starts PgBouncer for the database at `url`; returns the same database's URL through it. */
export async function startPgBouncer(t: Test, url: string, options: PgBouncerOptions): Promise<string> {
  const target = new URL(url);
  const database = target.pathname.slice(1);
  const user = decodeURIComponent(target.username);
  const dir = await makeTempDataDir('recorrencias-pgbouncer-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  await writeFile(join(dir, 'users.txt'), `"${user}" ""\n`, { mode: 0o644 });
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${database} = host=${target.hostname} port=${target.port || '5432'} dbname=${database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      `pool_mode = ${options.poolMode}`,
      `default_pool_size = ${options.poolSize}`,
      'max_client_conn = 200',
      // The service's pools send these at log-in; PgBouncer refuses unknown ones unless told to drop them.
      'ignore_startup_parameters = extra_float_digits,statement_timeout,idle_in_transaction_session_timeout',
      'query_wait_timeout = 20',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  const owner = serverOwner();
  const child = spawn(BINARY, [join(dir, 'pgbouncer.ini')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(owner === undefined ? {} : { uid: owner.uid, gid: owner.gid }),
  });
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const through = new URL(url);
  through.hostname = '127.0.0.1';
  through.port = String(port);
  await waitUntilAnswering(
    through.toString(),
    () => output,
    () => child.exitCode,
  );
  return through.toString();
}

async function waitUntilAnswering(
  url: string,
  output: () => string,
  exitCode: () => number | null,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const client = new pg.Client({ connectionString: url });
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (error) {
      if (exitCode() !== null || Date.now() > deadline)
        throw new Error(`PgBouncer did not answer: ${(error as Error).message}\n${output()}`, {
          cause: error,
        });
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
