// The application's connection pool (slonik over pg): type parsers for our column types, zod validation of
// every row a typed query returns, and no automatic retries (a retried transaction near a payment could
// repeat a side effect; the job queue owns retries).
import { guardPgClientErrors } from './unavailable.ts';
import {
  createPool,
  SchemaValidationError,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';

export type { DatabasePool, DatabaseTransactionConnection, CommonQueryMethods } from 'slonik';

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

/** Adds application_name to a connection URL so each role is recognisable in pg_stat_activity. */
export function withApplicationName(url: string, applicationName: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', applicationName);
  return parsed.toString();
}

export async function createDbPool(
  url: string,
  options: { maxConnections: number; applicationName: string; statementTimeoutMs?: number },
): Promise<DatabasePool> {
  guardPgClientErrors();
  return createPool(withApplicationName(url, options.applicationName), {
    maxPoolSize: options.maxConnections,
    captureStackTrace: false,
    connectionRetryLimit: 0,
    connectionTimeout: 5_000,
    idleTimeout: 30_000,
    queryRetryLimit: 0,
    transactionRetryLimit: 0,
    statementTimeout: options.statementTimeoutMs ?? 60_000,
    idleInTransactionSessionTimeout: 60_000,
    interceptors: [rowValidation],
    // slonik's default runs DISCARD ALL each time a connection goes back to the pool: one more round trip
    // (and transaction) per query, measured at ~4 of the 8.5 transactions per charge. Our code leaves no
    // session state behind (transactions are explicit; the task-run advisory lock is released explicitly).
    resetConnection: async () => undefined,
    typeParsers: [
      { name: 'int8', parse: int8 },
      { name: 'numeric', parse: (value: string) => Number(value) },
      { name: 'date', parse: (value: string) => value },
      { name: 'timestamptz', parse: (value: string) => new Date(value) },
      { name: 'timestamp', parse: (value: string) => new Date(`${value}Z`) },
    ],
  });
}
