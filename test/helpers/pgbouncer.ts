// A PgBouncer in front of a test database, for the tests of what holds through a connection pooler. Runs the
// Debian package's binary (`apt-get install pgbouncer`) with the shipped pgbouncer/pgbouncer.ini's settings,
// pointed at the test database; stopped at teardown.
import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Test } from 'tap';
import { freePort, makeTempDataDir, serverOwner } from '../../src/dev/embedded-postgres.ts';

export type PgBouncerOptions = { poolMode: 'session' | 'transaction'; poolSize: number };

const BINARY = process.env.PGBOUNCER_BIN ?? '/usr/sbin/pgbouncer';
const SHIPPED_CONFIG = new URL('../../pgbouncer/pgbouncer.ini', import.meta.url);

/** The `[pgbouncer]` settings of the configuration the README tells operators to start from. */
async function shippedSettings(): Promise<Record<string, string>> {
  const text = await readFile(SHIPPED_CONFIG, 'utf8');
  const section = text.split(/^\[pgbouncer\]$/m)[1] ?? '';
  const settings: Record<string, string> = {};
  for (const line of section.split('\n')) {
    const match = /^(\w+)\s*=\s*(.*)$/.exec(line.trim());
    if (match) settings[match[1] as string] = match[2] as string;
  }
  return settings;
}

/** Starts PgBouncer for the database at `url`; returns the same database's URL through it. */
export async function startPgBouncer(t: Test, url: string, options: PgBouncerOptions): Promise<string> {
  const target = new URL(url);
  const database = target.pathname.slice(1);
  const user = decodeURIComponent(target.username);
  const dir = await makeTempDataDir('recorrencias-pgbouncer-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  await writeFile(join(dir, 'users.txt'), `"${user}" ""\n`, { mode: 0o644 });
  const settings = {
    ...(await shippedSettings()),
    listen_addr: '127.0.0.1',
    listen_port: String(port),
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'users.txt'),
    pool_mode: options.poolMode,
    default_pool_size: String(options.poolSize),
    max_client_conn: '200',
    query_wait_timeout: '20',
    // Lets the test's user read SHOW CLIENTS / SHOW SERVERS on the admin console (clientPortOf).
    admin_users: user,
  };
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `${database} = host=${target.hostname} port=${target.port || '5432'} dbname=${database}`,
      '[pgbouncer]',
      ...Object.entries(settings).map(([name, value]) => `${name} = ${value}`),
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

/**
 * The local TCP port of the client connection that PgBouncer (at `bouncerUrl`) has paired with the server
 * connection of backend `pid`: the socket to cut to cut that client off.
 */
export async function clientPortOf(bouncerUrl: string, pid: number): Promise<number> {
  const admin = new URL(bouncerUrl);
  admin.pathname = '/pgbouncer';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const servers = await client.query<{ remote_pid: number; link: string }>('SHOW SERVERS');
    const server = servers.rows.find((row) => Number(row.remote_pid) === pid);
    if (server === undefined || server.link === '') throw new Error(`no client paired with backend ${pid}`);
    const clients = await client.query<{ ptr: string; port: number }>('SHOW CLIENTS');
    const paired = clients.rows.find((row) => row.ptr === server.link);
    if (paired === undefined) throw new Error(`client ${server.link} of backend ${pid} not found`);
    return Number(paired.port);
  } finally {
    await client.end();
  }
}
