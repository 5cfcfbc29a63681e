// The benchmarks' access to the Postgres server they measure on: which server (BENCH_DATABASE_URL, the local
// one, else an embedded one), one-off statements, and URLs of the throwaway databases they create there.
import pg from 'pg';
import { makeTempDataDir, startEmbeddedPostgres } from '../../src/dev/embedded-postgres.ts';

/** A maintenance URL (database `postgres`) on the server to measure, and how to stop it if we started it. */
export async function benchServer(): Promise<{ url: string; stop: () => Promise<void> }> {
  const candidates = [
    process.env.BENCH_DATABASE_URL,
    'postgres://postgres@127.0.0.1:5432/postgres',
    'postgres://root@127.0.0.1:5432/postgres',
  ];
  for (const url of candidates.filter((value): value is string => value !== undefined && value !== '')) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.end();
      return { url, stop: async () => undefined };
    } catch {
      await client.end().catch(() => undefined);
    }
  }
  const embedded = await startEmbeddedPostgres({
    dataDir: `${await makeTempDataDir('recorrencias-bench-pg-')}/data`,
  });
  return { url: embedded.url('postgres'), stop: () => embedded.stop() };
}

/** Runs one statement on a connection of its own (the test suite's `query` helper too). */
export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  // Bounded: a connect whose SYN is lost (a test's iptables cut catching the ephemeral port it was given)
  // would otherwise wait out the kernel's SYN retries, about two minutes, where a new attempt takes a moment.
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
