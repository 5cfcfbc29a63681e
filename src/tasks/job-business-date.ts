// Which business date a periodic task's job is for. A manual run names it; a cron-fired job (including the
// catch-up job pg-boss sends for a missed tick, which carries no occurrence time) is for the date of the
// latest occurrence of the task's cron at or before the moment the job was created, give or take an early fire.
import { CronExpressionParser } from 'cron-parser';
import { businessDate, type IsoDate } from '../domain/dates.ts';

/**
 * How early a tick's job may be created, by the database's clock, before its occurrence. pg-boss decides a tick
 * is due on its own estimate of the database's time (the scheduler's clock plus an offset it measures every
 * 10 minutes), so a clock step on the scheduler's host can send the 08:00 job at 07:59:56; without this margin it
 * would be dated to the day before, already done, and today's run would never happen. The margin only matters
 * when two occurrences are closer than it across midnight, which no daily or weekly schedule is.
 */
export const EARLY_FIRE_TOLERANCE_MS = 5 * 60 * 1000;

export function occurrenceBusinessDate(cron: string, timeZone: string, createdOn: Date): IsoDate {
  // prev() answers strictly before its reference, so start a millisecond after the margin.
  const interval = CronExpressionParser.parse(cron, {
    tz: timeZone,
    strict: false,
    currentDate: new Date(createdOn.getTime() + EARLY_FIRE_TOLERANCE_MS + 1),
  });
  return businessDate(interval.prev().toDate(), timeZone);
}
