// Deterministic identifiers. The idempotency key of a charge attempt is what the gateway dedupes on; a job
// id derived from (recurrence, business date, reason) lets a rerun of a task enqueue nothing new.
import { createHash } from 'node:crypto';
import type { IsoDate } from './dates.ts';

/** The gateway idempotency key of attempt `attempt` at charging `cycle` of recurrence `recurrenceId`. */
export function attemptKey(recurrenceId: number, cycle: IsoDate, attempt: number): string {
  return `rec-${recurrenceId}-${cycle}-t${attempt}`;
}

/** A name-based UUID (version 5 layout over SHA-1), stable for the same name. */
export function stableUuid(name: string): string {
  const bytes = createHash('sha1').update(`recorrencias:${name}`).digest().subarray(0, 16);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
