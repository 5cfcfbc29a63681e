// Applies the numbered SQL files in sql/ in order, once each. Safe when several processes run it at once
// (an advisory lock serialises them) and refuses to run when an applied file was edited (checksums). On a live
// database a migration waits only briefly for its table locks, and retries, so charges never queue behind it.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';
import { MIGRATION_LOCK_DEFAULTS, type MigrationLockPolicy } from '../config.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SqlRunner } from './raw-query.ts';
import { LOCK_TRANSACTION_SETTINGS } from './task-runs.ts';

export const MIGRATIONS_DIR = new URL('../../sql/', import.meta.url);

/** Arbitrary but fixed: the advisory lock every migrator of this service takes before touching the schema. */
const MIGRATION_LOCK_KEY = 725_190_417;

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/** Between two tries of a migration that gave up waiting for a lock: the charges queued behind it go through. */
const LOCK_RETRY_PAUSE_MS = 1_000;

/** lock_not_available (lock_timeout expired) and deadlock_detected: rolled back whole, safe to try again. */
const LOCK_FAILURES = new Set(['55P03', '40P01']);

export type MigrationFile = { version: number; name: string; checksum: string; sql: string };

type AppliedRow = { versao: number; nome: string; checksum: string };

export async function readMigrationFiles(dir: URL = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => FILE_PATTERN.test(name)).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const sql = await readFile(new URL(name, dir), 'utf8');
    const version = Number(FILE_PATTERN.exec(name)?.[1]);
    if (files.some((file) => file.version === version)) {
      throw new AppError('MIGRATION_UNKNOWN', `two migration files share version ${version}: fix sql/`);
    }
    files.push({ version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return files;
}

export type MigrationStatus = { pending: MigrationFile[]; edited: string[]; unknown: string[] };

/** Compares the files with what the database recorded. Never writes. */
export function compareMigrations(files: MigrationFile[], applied: AppliedRow[]): MigrationStatus {
  const byVersion = new Map(files.map((file) => [file.version, file]));
  const appliedVersions = new Set(applied.map((row) => row.versao));
  return {
    pending: files.filter((file) => !appliedVersions.has(file.version)),
    edited: applied
      .filter((row) => byVersion.has(row.versao) && byVersion.get(row.versao)?.checksum !== row.checksum)
      .map((row) => row.nome),
    unknown: applied.filter((row) => !byVersion.has(row.versao)).map((row) => row.nome),
  };
}

function clientRunner(client: pg.ClientBase): SqlRunner {
  return async (text, values) =>
    (await client.query(text, values as unknown[])).rows as Record<string, unknown>[];
}

async function readApplied(run: SqlRunner): Promise<AppliedRow[]> {
  const [table] = await run(`SELECT to_regclass('public.migracoes') IS NOT NULL AS exists`);
  if (table?.exists !== true) return [];
  return (await run('SELECT versao, nome, checksum FROM migracoes ORDER BY versao')) as AppliedRow[];
}

function assertNoDrift(status: MigrationStatus): void {
  if (status.edited.length > 0) {
    throw new AppError(
      'MIGRATION_EDITED',
      `applied migration(s) ${status.edited.join(', ')} were edited after being applied; migrations are forward-only: restore the file and add a new one`,
    );
  }
  if (status.unknown.length > 0) {
    throw new AppError(
      'MIGRATION_UNKNOWN',
      `the database has migration(s) ${status.unknown.join(', ')} that this release does not know: deploy the newer release`,
    );
  }
}

/** Reads the migration state (used by readiness checks and start-up). Never writes. */
export async function migrationStatus(run: SqlRunner, dir: URL = MIGRATIONS_DIR): Promise<MigrationStatus> {
  return compareMigrations(await readMigrationFiles(dir), await readApplied(run));
}

/**
 * Applies every pending migration, each in its own transaction. Idempotent: a second run applies nothing.
 * Returns the names it applied.
 */
export async function migrate(
  url: string,
  log: Logger,
  dir: URL = MIGRATIONS_DIR,
  lockPolicy: MigrationLockPolicy = MIGRATION_LOCK_DEFAULTS,
): Promise<string[]> {
  const files = await readMigrationFiles(dir);
  const connect = async (purpose: string) => {
    const client = new pg.Client({ connectionString: url, application_name: 'recorrencias:migrate' });
    client.on('error', (error) => log.error({ err: error, purpose }, 'migration connection error'));
    await client.connect();
    return client;
  };
  // The lock is held by a transaction left open on a connection of its own, as the task runs hold theirs (see
  // task-runs.ts): it ends with that transaction or connection, through a transaction-mode pooler too.
  const lock = await connect('lock');
  try {
    await takeMigrationLock(lock, log);
    const client = await connect('migrations');
    try {
      return await applyPending(client, files, log, lockPolicy);
    } finally {
      await client.end();
    }
  } finally {
    await lock.query('COMMIT').catch(() => undefined);
    await lock.end();
  }
}

/**
 * Opens the transaction that holds the lock, retrying every 250 ms while another migrator holds it. Waiting
 * outside a transaction matters behind a transaction-mode pooler: a waiter blocked inside one would pin a
 * server connection that the lock holder may need for its own migrations.
 */
async function takeMigrationLock(lock: pg.Client, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    await lock.query('BEGIN');
    const { rows } = await lock.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_xact_lock($1) AS locked
       FROM (SELECT count(set_config(setting.name, setting.value, true))
             FROM unnest($2::text[], $3::text[]) AS setting(name, value)
             JOIN pg_settings USING (name)) AS configured`,
      [MIGRATION_LOCK_KEY, LOCK_TRANSACTION_SETTINGS.names, LOCK_TRANSACTION_SETTINGS.values],
    );
    if (rows[0]?.locked === true) return;
    await lock.query('ROLLBACK');
    if (attempt === 1) log.info('another migrate is running: waiting for it to finish');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Applies every pending migration on `client`, each in its own transaction. Only call holding the lock. */
async function applyPending(
  client: pg.Client,
  files: MigrationFile[],
  log: Logger,
  lockPolicy: MigrationLockPolicy,
): Promise<string[]> {
  await client.query(`
    CREATE TABLE IF NOT EXISTS migracoes (
      versao integer CONSTRAINT migracoes_pkey PRIMARY KEY,
      nome text NOT NULL,
      checksum text NOT NULL,
      aplicada_em timestamptz NOT NULL DEFAULT now()
    )`);
  const status = compareMigrations(files, await readApplied(clientRunner(client)));
  assertNoDrift(status);
  const applied: string[] = [];
  for (const file of status.pending) {
    const started = Date.now();
    await applyWithLockRetries(client, file, log, lockPolicy);
    log.info({ migration: file.name, ms: Date.now() - started }, 'migration applied');
    applied.push(file.name);
  }
  return applied;
}

/**
 * One migration in one transaction, under `lock_timeout` (a file may set its own with SET LOCAL). A try that
 * gave up waiting for a lock (or lost a deadlock) left nothing behind: it is tried again after a pause, up to
 * the policy's attempts, and then fails naming what to do.
 */
async function applyWithLockRetries(
  client: pg.Client,
  file: MigrationFile,
  log: Logger,
  lockPolicy: MigrationLockPolicy,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    const failure = await applyOnce(client, file, lockPolicy.timeoutMs);
    if (failure === undefined) return;
    const code = (failure as { code?: unknown }).code;
    const lockFailure = typeof code === 'string' && LOCK_FAILURES.has(code);
    if (!lockFailure) {
      throw new AppError('INTERNAL', `migration ${file.name} failed: ${failure.message}`, { cause: failure });
    }
    if (attempt >= lockPolicy.attempts) {
      throw new AppError(
        'INTERNAL',
        `migration ${file.name} failed: it could not take its locks in ${lockPolicy.attempts} tries of ${lockPolicy.timeoutMs} ms (${failure.message}); nothing of it was applied. Long transactions holding them show in pg_stat_activity: rerun migrate when they are gone, or raise MIGRATION_LOCK_TIMEOUT_MS or MIGRATION_LOCK_ATTEMPTS`,
        { cause: failure },
      );
    }
    log.warn(
      {
        migration: file.name,
        attempt,
        attempts: lockPolicy.attempts,
        lockTimeoutMs: lockPolicy.timeoutMs,
        err: failure,
      },
      'migration gave up waiting for a lock: rolled back, trying again',
    );
    await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_PAUSE_MS));
  }
}

/** Applies `file` and records it, in one transaction; returns the error that rolled it back, if any. */
async function applyOnce(
  client: pg.Client,
  file: MigrationFile,
  lockTimeoutMs: number,
): Promise<Error | undefined> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`]);
    await client.query(file.sql);
    await client.query('INSERT INTO migracoes (versao, nome, checksum) VALUES ($1, $2, $3)', [
      file.version,
      file.name,
      file.checksum,
    ]);
    await client.query('COMMIT');
    return undefined;
  } catch (error) {
    await client.query('ROLLBACK');
    return error as Error;
  }
}
