// The application's connection pool (slonik over pg): type parsers for our column types, zod validation of
// every row a typed query returns, and no automatic retries (a retried transaction near a payment could
// repeat a side effect; the job queue owns retries).
import { ISO_DATE } from '../domain/dates.ts';
import { guardPgClientErrors } from './unavailable.ts';
import { z } from 'zod';
import {
  createPool,
  SchemaValidationError,
  sql,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';

export type { DatabasePool, DatabaseTransactionConnection, CommonQueryMethods } from 'slonik';

const NoRows = z.object({});

/** Validates each row against the query's zod schema (`sql.type(schema)`), returning the parsed value. */
const rowValidation: Interceptor = {
  name: 'row-validation',
  transformRow: (context, query, row) => {
    const parser = context.resultParser;
    if (parser === undefined) return row;
    const result = parser['~standard'].validate(row);
    if (result instanceof Promise) throw new TypeError('row schemas must be synchronous');
    if (result.issues !== undefined) {
      throw new SchemaValidationError(query, row, result.issues);
    }
    return result.value as QueryResultRow;
  },
};

function int8(value: string): number {
  const parsed = Number(value);
  // Cents and ids stay far below 2^53; a larger value would silently lose precision, so refuse it.
  if (!Number.isSafeInteger(parsed)) throw new RangeError(`int8 value out of safe range: ${value}`);
  return parsed;
}

/**
 * Dates are handled as the server's text ('2031-03-10'), compared and parsed as ISO dates, and timestamps parsed
 * from ISO text. A role or database set to another DateStyle ('SQL, DMY' sends '10/03/2031') would make every
 * comparison quietly wrong (a date read as not due yet is skipped) and read 2031-03-10 as 2031-10-03, so a date
 * or timestamp in any other shape fails the query instead.
 */
function iso(kind: string, value: string, shape: RegExp): string {
  if (!shape.test(value))
    throw new Error(
      `Postgres sent the ${kind} '${value}', not in ISO form: set DateStyle to ISO (${DATESTYLE_FIX})`,
    );
  return value;
}

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}/;

const isoDateText = (value: string): string => iso('date', value, ISO_DATE);

export const DATESTYLE_FIX =
  "ALTER DATABASE <name> SET DateStyle = 'ISO, MDY', or ALTER ROLE <role> IN DATABASE <name> when the role sets it";

/** Adds application_name to a connection URL so each role is recognisable in pg_stat_activity. */
export function withApplicationName(url: string, applicationName: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', applicationName);
  return parsed.toString();
}

export type DbPoolOptions = {
  maxConnections: number;
  applicationName: string;
  statementTimeoutMs?: number;
  /**
   * Open all `maxConnections` before returning and keep them open (no idle timeout, no replacement by age),
   * or fail with none held. For workers: see `holdAllConnections`.
   */
  holdConnections?: boolean;
};

export async function createDbPool(url: string, options: DbPoolOptions): Promise<DatabasePool> {
  guardPgClientErrors();
  const hold = options.holdConnections === true;
  const pool = await createPool(withApplicationName(url, options.applicationName), {
    maxPoolSize: options.maxConnections,
    captureStackTrace: false,
    connectionRetryLimit: 0,
    connectionTimeout: 5_000,
    idleTimeout: hold ? 'DISABLE_TIMEOUT' : 30_000,
    // slonik replaces connections older than 30 minutes by default, opening the new one on demand: a held
    // pool would give its slot away for that moment. (Undefined keeps slonik's default.)
    maximumConnectionAge: hold ? 'DISABLE_TIMEOUT' : undefined,
    queryRetryLimit: 0,
    transactionRetryLimit: 0,
    statementTimeout: options.statementTimeoutMs ?? 60_000,
    idleInTransactionSessionTimeout: 60_000,
    interceptors: [rowValidation],
    // slonik's default runs DISCARD ALL each time a connection goes back to the pool: one more round trip
    // (and transaction) per query, measured at ~4 of the 8.5 transactions per charge. Our code leaves no
    // session state behind (transactions are explicit; the task-run and migration locks are transaction-scoped).
    resetConnection: async () => undefined,
    typeParsers: [
      { name: 'int8', parse: int8 },
      { name: 'numeric', parse: (value: string) => Number(value) },
      { name: 'date', parse: isoDateText },
      { name: 'timestamptz', parse: (value: string) => new Date(iso('timestamp', value, ISO_TIMESTAMP)) },
      { name: 'timestamp', parse: (value: string) => new Date(`${iso('timestamp', value, ISO_TIMESTAMP)}Z`) },
    ],
  });
  if (!hold) return pool;
  try {
    await holdAllConnections(pool, options.maxConnections);
    return pool;
  } catch (error) {
    await pool.end();
    throw error;
  }
}

/**
 * Opens `count` connections at once and returns them to the pool, or throws the first refusal. A pool that
 * opens connections on demand meets Postgres's limits (max_connections, a role's CONNECTION LIMIT, a
 * PgBouncer pool) in the middle of a charge batch, which then fails and costs every charge in it a retry;
 * measured past a role's limit, nearly every charge of the morning retried (README, "Beyond one machine").
 * Holding the whole budget from start-up moves that refusal to before the first job is taken. A connection
 * closed by an error (a Postgres restart, a failed statement) is opened again when next needed, and can meet
 * the limit then.
 */
async function holdAllConnections(pool: DatabasePool, count: number): Promise<void> {
  const allHeld = Promise.withResolvers<void>();
  let held = 0;
  let refusal: { error: unknown } | undefined;
  // Each holder keeps its connection until all are open (or one is refused), so none is handed to the next.
  // The statement makes a pooler in session mode (PgBouncer) assign a server connection to each, as it only
  // does at a client's first statement.
  const holders = Array.from({ length: count }, () =>
    pool
      .connect(async (connection) => {
        await connection.query(sql.type(NoRows)`SELECT`);
        held += 1;
        if (held === count) allHeld.resolve();
        await allHeld.promise;
      })
      .catch((error: unknown) => {
        refusal ??= { error };
        allHeld.resolve();
      }),
  );
  await Promise.all(holders);
  if (refusal !== undefined) throw refusal.error;
}
