// A PostgreSQL cluster the fault suite owns (embedded, temp dir, free port): it may restart or kill it at
// will, never touching the machine's shared server. Holds a migrated template; each scenario gets a clone.
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import {
  makeTempDataDir,
  startEmbeddedPostgres,
  type EmbeddedPostgres,
} from '../../../src/dev/embedded-postgres.ts';
import { serviceEnv } from './env.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Where the built service under test lives (its dist/main.js): this checkout, or CHAOS_SERVICE_ROOT. */
export const SERVICE_ROOT = process.env.CHAOS_SERVICE_ROOT ?? PROJECT_ROOT;
const TEMPLATE = 'chaos_template';

export type Cluster = {
  pg: EmbeddedPostgres;
  /** A fresh migrated database (a clone of the template); returns its URL. */
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
};

/** Runs one statement on a short-lived connection (robust across restarts: nothing is kept open). */
export async function query<R extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    application_name: 'chaos-harness',
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Starts a cluster in a new temp dir and migrates its template with the suite's queue options. */
export async function startCluster(label: string): Promise<Cluster> {
  const dir = await makeTempDataDir(`recorrencias-chaos-${label}-`);
  const server = await startEmbeddedPostgres({ dataDir: join(dir, 'data') });
  await server.createDatabase(TEMPLATE);
  const migrated = spawnSync(process.execPath, ['dist/main.js', 'migrate'], {
    cwd: SERVICE_ROOT,
    env: { PATH: process.env.PATH, ...serviceEnv(server.url(TEMPLATE)), LOG_LEVEL: 'warn' },
    encoding: 'utf8',
  });
  if (migrated.status !== 0) {
    await server.stop();
    throw new Error(`migrate of the chaos template failed:\n${migrated.stdout}${migrated.stderr}`);
  }
  return {
    pg: server,
    createDatabase: async (name) => {
      await query(server.url(), `CREATE DATABASE "${name}" TEMPLATE ${TEMPLATE}`);
      return server.url(name);
    },
    dropDatabase: async (name) => {
      await query(server.url(), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
    destroy: async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Terminates the service's sessions on `url`'s database (application_name recorrencias:*); returns how many. */
export async function terminateServiceBackends(url: string): Promise<number> {
  const rows = await query<{ n: number }>(
    url,
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'recorrencias:%' AND pid <> pg_backend_pid()`,
  );
  return rows[0]?.n ?? 0;
}
