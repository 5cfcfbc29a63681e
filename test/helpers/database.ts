// A fresh, migrated database per test file: cloned from the template the test runner migrated once
// (CREATE DATABASE ... TEMPLATE is a file copy, ~50 ms), dropped when the test file ends.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import { eventually } from './processes.ts';
import { sql } from '../../scripts/bench/database.ts';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: run the tests with \`npm test\`, which prepares the database`);
  }
  return value;
}

/** A maintenance connection URL (database `postgres`) on the test cluster. */
export function adminUrl(): string {
  return required('TEST_ADMIN_DATABASE_URL');
}

export function databaseUrl(name: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function uniqueName(kind: string): string {
  const prefix = required('TEST_DATABASE_PREFIX');
  return `${prefix}${kind}_${randomBytes(4).toString('hex')}`;
}

/** A migrated database (our schema, pg-boss's schema and the queues), private to the calling test. */
export async function createMigratedDatabase(t: Test): Promise<string> {
  const template = required('TEST_TEMPLATE_DATABASE');
  const name = uniqueName('m');
  await withAdmin((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  t.teardown(() => dropDatabase(name));
  return databaseUrl(name);
}

/** An empty database (nothing migrated), private to the calling test. */
export async function createEmptyDatabase(t: Test): Promise<string> {
  const name = uniqueName('e');
  await withAdmin((client) => client.query(`CREATE DATABASE "${name}"`));
  t.teardown(() => dropDatabase(name));
  return databaseUrl(name);
}

export async function dropDatabase(name: string): Promise<void> {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** Runs one query on a short-lived connection: for test set-up and assertions, not for the code under test. */
export const query = sql;

/** Resolves once at least `count` sessions of the database wait on a lock: a test's interleaving point. */
export async function lockWaiters(url: string, count = 1): Promise<void> {
  await eventually(async () => {
    const [row] = await query<{ n: number }>(
      url,
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    return row !== undefined && row.n >= count ? true : undefined;
  });
}

/**
 * The advisory locks taken in the database at `url` (pg_locks lists every database's: other test files' must
 * not count), with the holding backend's pid and client port.
 */
export async function advisoryLocks(
  url: string,
): Promise<Array<{ pid: number; port: number | null; granted: boolean }>> {
  return query(
    url,
    `SELECT l.pid, a.client_port AS port, l.granted
     FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
     WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
}

/**
 * A login role limited to `limit` connections (superusers, which the suite connects as, are exempt from such
 * limits), with the rights the service's roles need on the database at `url`; dropped when the test ends.
 * Returns `url` logged in as that role.
 */
export async function createLimitedRole(
  t: Test,
  url: string,
  limit: number,
): Promise<{ role: string; url: string }> {
  const role = `recorrencias_limited_${randomBytes(4).toString('hex')}`;
  await query(adminUrl(), `CREATE ROLE ${role} LOGIN CONNECTION LIMIT ${limit}`);
  t.teardown(async () => {
    await query(url, `DROP OWNED BY ${role}`).catch(() => undefined);
    await query(adminUrl(), `DROP ROLE IF EXISTS ${role}`);
  });
  for (const statement of [
    `GRANT USAGE ON SCHEMA public, pgboss TO ${role}`,
    `GRANT ALL ON ALL TABLES IN SCHEMA public, pgboss TO ${role}`,
    `GRANT ALL ON ALL SEQUENCES IN SCHEMA public, pgboss TO ${role}`,
    `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public, pgboss TO ${role}`,
  ]) {
    await query(url, statement);
  }
  const limited = new URL(url);
  limited.username = role;
  return { role, url: limited.toString() };
}
