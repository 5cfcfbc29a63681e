// Calendar dates as 'YYYY-MM-DD' strings and the business date of an instant in a time zone. Business dates
// are local calendar dates (São Paulo by default), never UTC days: 23:30 local on the 30th is the 30th.
import { z } from 'zod';

/** A calendar date, 'YYYY-MM-DD', that exists (no Feb 30). */
/** The shape of an ISO calendar date, YYYY-MM-DD (shape only: isoDate also checks it is a real date). */
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
export const isoDate = z
  .string()
  .regex(ISO_DATE, 'must be a date in YYYY-MM-DD form')
  // zod runs every check even after one fails, so this one re-tests the shape before parsing.
  .refine(
    (value) => !ISO_DATE.test(value) || toIsoDate(parseIsoDate(value)) === value,
    'must be a real calendar date',
  );

export type IsoDate = string;

type Parts = { year: number; month: number; day: number };

/** Parses 'YYYY-MM-DD' into a Date at UTC midnight: a calendar date carried in a Date, not an instant. */
export function parseIsoDate(value: IsoDate): Date {
  const [year, month, day] = value.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(year, month - 1, day));
}

export function toIsoDate(date: Date): IsoDate {
  return date.toISOString().slice(0, 10);
}

export function dateParts(value: IsoDate): Parts {
  const [year, month, day] = value.split('-').map(Number) as [number, number, number];
  return { year, month, day };
}

export function fromParts(year: number, month: number, day: number): IsoDate {
  return toIsoDate(new Date(Date.UTC(year, month - 1, day)));
}

export function addDays(value: IsoDate, days: number): IsoDate {
  const date = parseIsoDate(value);
  date.setUTCDate(date.getUTCDate() + days);
  return toIsoDate(date);
}

export function daysBetween(from: IsoDate, to: IsoDate): number {
  return Math.round((parseIsoDate(to).getTime() - parseIsoDate(from).getTime()) / 86_400_000);
}

export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The calendar date of `instant` in `timeZone`. */
export function businessDate(instant: Date, timeZone: string): IsoDate {
  let formatter = formatters.get(timeZone);
  if (formatter === undefined) {
    // en-CA formats as YYYY-MM-DD.
    formatter = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter.format(instant);
}

/** The later of two dates (ISO dates compare as strings). */
export function laterDate(a: IsoDate, b: IsoDate): IsoDate {
  return a > b ? a : b;
}
