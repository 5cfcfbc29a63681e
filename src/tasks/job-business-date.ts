// Which business date a periodic task's job is for. A manual run names it; a cron-fired job (including the
// catch-up job pg-boss sends for a missed tick, which carries no occurrence time) is for the date of the
// latest occurrence of the task's cron at or before the moment the job was created.
import { CronExpressionParser } from 'cron-parser';
import { businessDate, type IsoDate } from '../domain/dates.ts';

export function occurrenceBusinessDate(cron: string, timeZone: string, createdOn: Date): IsoDate {
  // prev() answers strictly before its reference, so start a millisecond after creation.
  const interval = CronExpressionParser.parse(cron, {
    tz: timeZone,
    strict: false,
    currentDate: new Date(createdOn.getTime() + 1),
  });
  return businessDate(interval.prev().toDate(), timeZone);
}
