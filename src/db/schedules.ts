// Reads pg-boss's schedule table on a connection of ours. The schedulers' reconcile reads the schedules inside
// the transaction that holds the pause lock (pauses.ts): through pg-boss's own pool it would hold that lock
// while waiting for a second connection, and every pause and resume of a task would wait behind it. pg-boss
// owns the table; its writes go through pg-boss's schedule() and unschedule() with `db`.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { BOSS_SCHEMA } from './schema-check.ts';

const ScheduleRow = z.object({
  name: z.string(),
  cron: z.string(),
  timezone: z.string().nullable(),
  /** Seconds since its cron or time zone was last written (pg-boss's updated_on: a tick leaves it alone). */
  updated_seconds_ago: z.number(),
});
export type ScheduleRow = z.infer<typeof ScheduleRow>;

/** The schedules of `names` with the default key (the only key this service uses). */
export async function listSchedules(
  db: CommonQueryMethods,
  names: readonly string[],
): Promise<readonly ScheduleRow[]> {
  return (
    await db.query(sql.type(ScheduleRow)`
      SELECT name, cron, timezone, extract(epoch FROM now() - updated_on)::float8 AS updated_seconds_ago
      FROM ${sql.identifier([BOSS_SCHEMA, 'schedule'])}
      WHERE name = ANY(${sql.array([...names], 'text')}) AND key = ''`)
  ).rows;
}
