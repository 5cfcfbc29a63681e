// `npm start` as a new user runs it: no DATABASE_URL, no GATEWAY_URL. It must come up on an embedded
// PostgreSQL with the fake gateway, answer /readyz, and a Ctrl-C (SIGINT to the terminal's process group)
// must leave no process behind.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { freePort, makeTempDataDir } from '../../src/dev/embedded-postgres.ts';
import { eventually, PROJECT_ROOT } from '../helpers/processes.ts';

/** Pids of live processes whose command line mentions `needle`. */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

t.test(
  'npm start comes up on embedded Postgres, answers /readyz, and Ctrl-C leaves nothing behind',
  async (t) => {
    const dir = await makeTempDataDir('recorrencias-start-');
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const dataDir = join(dir, 'postgres');
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      EMBEDDED_PG_DIR: dataDir,
      ADMIN_PORT: String(port),
      LOG_FORMAT: 'json',
    };
    // Its own process group, as a terminal gives a foreground job, so SIGINT can go to the whole group.
    const npm = spawn('npm', ['start'], {
      cwd: PROJECT_ROOT,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      npm.on('exit', (code, signal) => resolve({ code, signal })),
    );
    t.teardown(() => {
      try {
        process.kill(-(npm.pid as number), 'SIGKILL');
      } catch {
        // Already gone.
      }
    });

    await eventually(
      async () => (output.includes('recorrencias is running') ? true : undefined),
      120_000,
      250,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${output.slice(-3000)}`);
    });
    t.match(output, /demo for business date/, 'the demo summary was printed');
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    t.equal(ready.status, 200, '/readyz answers 200');
    const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    t.ok(existsSync(`/proc/${postmaster}`), 'the embedded postmaster is running');

    process.kill(-(npm.pid as number), 'SIGINT');
    // npm itself re-raises the SIGINT once its script has exited (so a shell sees ^C); the service under it
    // must have stopped cleanly.
    const end = await exited;
    t.ok(end.code === 0 || end.signal === 'SIGINT', `npm start ended by the Ctrl-C (${JSON.stringify(end)})`);
    t.match(output, /"msg":"embedded PostgreSQL stopped"/, 'the service stopped the embedded database');
    t.match(output, /"role":"dev"[^\n]*"msg":"stopped"/, 'the service finished its orderly stop');
    await eventually(async () => (existsSync(`/proc/${postmaster}`) ? undefined : true), 20_000);
    t.same(processesMentioning(dataDir), [], 'no postgres process is left on the data folder');
    t.same(processesMentioning('dist/main.js dev'), [], 'no service process is left');
  },
);
