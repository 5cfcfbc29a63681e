// Runs SQL text with $1..$n values through a slonik connection. slonik has no public call for raw text, so
// this builds the query token `sql.unsafe` would build. It is what lets pg-boss run its statements inside
// our transactions ({ db }). Relies on slonik's token shape: slonik is pinned to an exact version in
// package.json, and test/db/raw-query.test.ts covers it. Single statements only (slonik rejects
// multi-statement text after running it).
import type { CommonQueryMethods, PrimitiveValueExpression, QuerySqlToken } from 'slonik';
import { z } from 'zod';

const QUERY_TOKEN = Symbol.for('SLONIK_TOKEN_QUERY');
const anyRow = z.record(z.string(), z.unknown());

export type SqlRunner = (text: string, values?: readonly unknown[]) => Promise<Record<string, unknown>[]>;

export function rawToken(text: string, values: readonly unknown[] = []): QuerySqlToken<typeof anyRow> {
  return Object.freeze({
    type: QUERY_TOKEN,
    sql: text,
    values: values as readonly PrimitiveValueExpression[],
    parser: anyRow,
  }) as unknown as QuerySqlToken<typeof anyRow>;
}

export async function rawQuery(
  connection: CommonQueryMethods,
  text: string,
  values: readonly unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const result = await connection.query(rawToken(text, values));
  return [...result.rows];
}

export function runnerFor(connection: CommonQueryMethods): SqlRunner {
  return (text, values) => rawQuery(connection, text, values);
}
