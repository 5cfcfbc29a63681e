// The time-of-day run-late alerts of prometheus/alerts.yml (a daily task not done 30 minutes after its time),
// and whether a task's configured time leaves its alert a chance to fire before the business date changes: at
// local midnight `recorrencias_business_time_minutes` starts again and the alert reads the new date.
import type { Config } from '../config.ts';
import { addDays, type IsoDate } from '../domain/dates.ts';
import { firstOccurrenceOn } from '../tasks/job-business-date.ts';
import { minutesSinceMidnight } from './metrics.ts';

export const RUN_LATE_ALERTS = {
  processar_recorrencias_do_dia: 'RecorrenciasDailyRunLate',
  retentar_cobrancas_falhadas: 'RecorrenciasRetryRunLate',
  notificar_recorrencias_hold: 'RecorrenciasNoticeRunLate',
} as const;

/** Each alert's condition: not succeeded this many minutes after the task's time... */
export const RUN_LATE_GRACE_MINUTES = 30;
/** ...held for this long (the rules' `for`) before it fires. */
export const RUN_LATE_FOR_MINUTES = 2;

const LAST_MINUTE_OF_DAY = 24 * 60 - 1;
const LATEST_ALERTED_MINUTE = LAST_MINUTE_OF_DAY - RUN_LATE_GRACE_MINUTES - RUN_LATE_FOR_MINUTES;

const hhmm = (minutes: number) =>
  `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;

/** The latest local time a daily task can run at and still have its run-late alert fire that day (23:27). */
export const LATEST_ALERTED_TIME = hhmm(LATEST_ALERTED_MINUTE);

/** What to do about a task this function names; `check` and the scheduler say it alike. */
export const RUN_LATE_ADVICE = `schedule daily tasks at ${LATEST_ALERTED_TIME} or earlier`;

export type BlindAlert = { task: keyof typeof RUN_LATE_ALERTS; alert: string; time: string };

/** One task whose alert cannot fire, as `check` and the scheduler print it. */
export const describeBlindAlert = ({ task, alert, time }: BlindAlert): string =>
  `${task} at ${time}: ${alert} cannot fire before midnight`;

/**
 * The daily tasks whose configured time, on any of the 7 business dates from `from`, is too late in the day for
 * their run-late alert to fire; each with that time. A task with no occurrence on a date is not due then.
 */
export function runLateAlertsThatCannotFire(config: Config, from: IsoDate): BlindAlert[] {
  const blind: BlindAlert[] = [];
  for (const [task, alert] of Object.entries(RUN_LATE_ALERTS) as Array<
    [keyof typeof RUN_LATE_ALERTS, string]
  >) {
    const latest = Math.max(
      -1,
      ...Array.from({ length: 7 }, (_, day) =>
        firstOccurrenceOn(config.cron[task], config.timeZone, addDays(from, day)),
      )
        .filter((occurrence) => occurrence !== null)
        .map((occurrence) => minutesSinceMidnight(occurrence, config.timeZone)),
    );
    if (latest > LATEST_ALERTED_MINUTE) blind.push({ task, alert, time: hhmm(latest) });
  }
  return blind;
}
