// Which business date a cron-fired periodic task's job is for (a manual run names its date in the payload: see
// jobBusinessDate in periodic-runner.ts). A cron-fired job (including the
// catch-up job pg-boss sends for a missed tick, which carries no occurrence time) is for the date of the
// latest occurrence of the task's cron at or before the moment the job was created, or of one a few seconds
// after it (a tick sent early).
import { CronExpressionParser } from 'cron-parser';
import { businessDate, type IsoDate } from '../domain/dates.ts';

/**
 * How early a tick's job may be created, by the database's clock, before its occurrence. pg-boss decides a tick
 * is due on its own estimate of the database's time (the scheduler's clock plus an offset it measures every
 * 10 minutes), so a clock step on the scheduler's host can send the 08:00 job at 07:59:56; without this margin it
 * would be dated to the day before, already done, and today's run would never happen. Kept to clock-step scale:
 * a catch-up job for a missed tick, sent within the margin before the next occurrence, is dated to that next one
 * (its date's run then starts that much early, and the missed date is caught up by it, as by any later run).
 */
const EARLY_FIRE_TOLERANCE_MS = 60 * 1000;

function latestOccurrence(cron: string, timeZone: string, atOrBefore: Date): Date {
  // prev() answers strictly before its reference, so start a millisecond after.
  return CronExpressionParser.parse(cron, {
    tz: timeZone,
    strict: false,
    currentDate: new Date(atOrBefore.getTime() + 1),
  })
    .prev()
    .toDate();
}

/**
 * The business date of the job's occurrence, and whether it was sent early (created before its occurrence). A
 * margin never carries a job into the next business date: a tick sent before midnight for an occurrence after it
 * would charge the next day's cycles a day early, so such a job keeps the date it was created on.
 */
export function jobOccurrence(
  cron: string,
  timeZone: string,
  createdOn: Date,
): { date: IsoDate; early: boolean } {
  const strict = businessDate(latestOccurrence(cron, timeZone, createdOn), timeZone);
  const withMargin = latestOccurrence(
    cron,
    timeZone,
    new Date(createdOn.getTime() + EARLY_FIRE_TOLERANCE_MS),
  );
  const date = businessDate(withMargin, timeZone);
  if (withMargin <= createdOn || date !== businessDate(createdOn, timeZone))
    return { date: strict, early: false };
  return { date, early: date !== strict };
}

/**
 * The first occurrence of `cron` on the business date `date` (in `timeZone`), or null when it has none that day
 * (a weekly schedule on another day). For alerts that follow the configured times ("not done 30 minutes after
 * its time"), not a fixed 08:30.
 */
export function firstOccurrenceOn(cron: string, timeZone: string, date: IsoDate): Date | null {
  // From UTC midnight of the day before: before the local midnight of `date` in every time zone.
  const interval = CronExpressionParser.parse(cron, {
    tz: timeZone,
    strict: false,
    currentDate: new Date(Date.parse(`${date}T00:00:00Z`) - 24 * 3600 * 1000),
  });
  for (let i = 0; i < 5000; i++) {
    const next = interval.next().toDate();
    const day = businessDate(next, timeZone);
    if (day === date) return next;
    if (day > date) return null;
  }
  return null;
}
