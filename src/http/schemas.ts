// Request schemas shared by several route files.
import { z } from 'zod';

export const recurrenceId = z.object({ id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER) });

/** For actions that take no body: none, or an empty JSON object; any field is refused, not ignored. */
export const noBody = z.object({}).strict().nullish();
