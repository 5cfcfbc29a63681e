// Lets pg-boss run its statements on one of our slonik connections, so that a job's completion (or a batch
// of new jobs) commits in the same transaction as the domain writes around it: pass `{ db: bossDb(tx) }`.
import type { Db } from 'pg-boss';
import type { CommonQueryMethods } from 'slonik';
import { rawQuery } from '../db/raw-query.ts';

export function bossDb(connection: CommonQueryMethods): Db {
  return {
    executeSql: async (text: string, values?: unknown[]) => ({
      rows: await rawQuery(connection, text, values ?? []),
    }),
  };
}
