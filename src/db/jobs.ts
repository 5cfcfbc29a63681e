// Read-only queries on pg-boss's job table, for what its API does not answer in one statement (counts by
// state across queues, unfinished work). pg-boss owns the table; we never write to it directly.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { BOSS_SCHEMA } from './schema-check.ts';

const job = sql.identifier([BOSS_SCHEMA, 'job']);

/** Jobs of `queue` not yet in a final state (created, retry or active). */
export async function countUnfinishedJobs(db: CommonQueryMethods, queue: string): Promise<number> {
  return db.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT count(*)::int AS n FROM ${job} WHERE name = ${queue} AND state < 'completed'`);
}
