// Request schemas shared by several route files.
import { z } from 'zod';

/**
 * A row id in a path: digits only. z.coerce read `0x10` as 16, `1e3` as 1000 and ` 12` as 12, so a mistyped
 * path acted on another row; those are refused with 400 now.
 */
export const rowId = z
  .string()
  .regex(/^[1-9][0-9]{0,15}$/, 'expected a positive integer id (digits only)')
  .transform(Number)
  .pipe(z.number().max(Number.MAX_SAFE_INTEGER));

/** A page size in a query string (digits only, as rowId), between 1 and `max`. */
export const pageLimit = (max: number, fallback: number) =>
  z
    .string()
    .regex(/^[0-9]{1,6}$/, 'expected an integer (digits only)')
    .transform(Number)
    .pipe(z.number().int().min(1).max(max))
    .default(fallback);

export const recurrenceId = z.object({ id: rowId });

/** For actions that take no body: none, or an empty JSON object; any field is refused, not ignored. */
export const noBody = z.object({}).strict().nullish();
