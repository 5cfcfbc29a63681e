// Reads pg-boss's instance registry (pgboss.instance) for what its API does not answer: how many lives of each
// role ended without stopping (a crash, kill -9, an out-of-memory kill) in a recent window, by the database's
// clock. pg-boss's own crash_restarts counts a streak since the last clean stop, however old: an OOM kill on
// Monday and another on Friday would read as two crashes in a row.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { BOSS_SCHEMA } from './schema-check.ts';

const CrashRow = z.object({ name: z.string(), crashes: z.number() });

/**
 * Per instance name, the lives that ended without stop() and whose last heartbeat falls in the last `minutes`.
 * A life counts once it has missed three heartbeats (pg-boss's own rule for "not live"), so about 30 s after
 * it died. pg-boss keeps the newest 20 dead lives per name, which caps the count.
 */
export async function recentCrashes(
  db: CommonQueryMethods,
  minutes: number,
): Promise<readonly z.infer<typeof CrashRow>[]> {
  const instance = sql.identifier([BOSS_SCHEMA, 'instance']);
  const result = await db.query(sql.type(CrashRow)`
    SELECT name, count(*)::int AS crashes FROM ${instance}
    WHERE name IS NOT NULL AND stopped_on IS NULL
      AND heartbeat_on < now() - heartbeat_seconds * 3 * interval '1 second'
      AND heartbeat_on >= now() - make_interval(mins => ${minutes})
    GROUP BY name`);
  return result.rows;
}
