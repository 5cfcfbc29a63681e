// The billing calendar: when each cycle of a recurrence falls. Monthly-family cycles keep an anchor day and
// are computed from it, clamped to the month's last day (anchor 31: Jan 31 -> Feb 28/29 -> Mar 31 -> Apr 30),
// never by adding a month to the previous date, which drifts (Jan 31 + 1 month -> Feb 28 -> Mar 28).
import { addDays, dateParts, daysBetween, daysInMonth, fromParts, type IsoDate } from './dates.ts';

export const PERIODICITIES = ['semanal', 'mensal', 'trimestral', 'semestral', 'anual'] as const;
export type Periodicity = (typeof PERIODICITIES)[number];

const MONTHS_PER_CYCLE: Record<Exclude<Periodicity, 'semanal'>, number> = {
  mensal: 1,
  trimestral: 3,
  semestral: 6,
  anual: 12,
};

export type Schedule = { periodicidade: Periodicity; dia_ancora: number | null };

function monthIndex(date: IsoDate): number {
  const { year, month } = dateParts(date);
  return year * 12 + (month - 1);
}

function anchoredDate(index: number, anchorDay: number): IsoDate {
  const year = Math.floor(index / 12);
  const month = (index % 12) + 1;
  return fromParts(year, month, Math.min(anchorDay, daysInMonth(year, month)));
}

function requireAnchor(schedule: Schedule): number {
  if (schedule.dia_ancora === null)
    throw new RangeError(`${schedule.periodicidade} recurrences need an anchor day`);
  return schedule.dia_ancora;
}

/** The cycle after `cycle`. */
export function nextCycle(cycle: IsoDate, schedule: Schedule): IsoDate {
  if (schedule.periodicidade === 'semanal') return addDays(cycle, 7);
  return anchoredDate(monthIndex(cycle) + MONTHS_PER_CYCLE[schedule.periodicidade], requireAnchor(schedule));
}

/**
 * The latest cycle on or before `date`, counting from the unpaid cycle `due` (which must be <= date).
 * Closed-form, so a recurrence years behind costs the same as one a day behind.
 */
export function latestCycleOnOrBefore(due: IsoDate, date: IsoDate, schedule: Schedule): IsoDate {
  if (due > date) throw new RangeError(`cycle ${due} is after ${date}`);
  if (schedule.periodicidade === 'semanal') return addDays(due, 7 * Math.floor(daysBetween(due, date) / 7));
  const step = MONTHS_PER_CYCLE[schedule.periodicidade];
  const anchor = requireAnchor(schedule);
  let cycles = Math.floor((monthIndex(date) - monthIndex(due)) / step);
  while (cycles > 0 && anchoredDate(monthIndex(due) + cycles * step, anchor) > date) cycles -= 1;
  return cycles === 0 ? due : anchoredDate(monthIndex(due) + cycles * step, anchor);
}

/** Every cycle from `from` (inclusive) up to `until` (exclusive), in order. */
export function cyclesBetween(from: IsoDate, until: IsoDate, schedule: Schedule): IsoDate[] {
  const cycles: IsoDate[] = [];
  for (let cycle = from; cycle < until; cycle = nextCycle(cycle, schedule)) cycles.push(cycle);
  return cycles;
}

export type ChargePlan = { cycle: IsoDate; skipped: IsoDate[] };

/**
 * Which cycle a run on `date` charges for a recurrence whose oldest unpaid cycle is `due`. One cycle behind
 * (the service was down yesterday): that cycle. Several behind (back from a long hold): by default only the
 * latest cycle is charged and the ones in between are skipped, to be recorded as such; with back-billing,
 * the oldest unpaid cycle is charged (and the next one after it is approved).
 */
export function planCharge(due: IsoDate, date: IsoDate, schedule: Schedule, backbill: boolean): ChargePlan {
  if (backbill) return { cycle: due, skipped: [] };
  const cycle = latestCycleOnOrBefore(due, date, schedule);
  return { cycle, skipped: cyclesBetween(due, cycle, schedule) };
}
