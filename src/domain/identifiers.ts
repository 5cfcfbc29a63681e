// Deterministic identifiers. The idempotency key of a charge attempt is what the gateway dedupes on; a job
// id derived from (recurrence, business date, reason) lets a rerun of a task enqueue nothing new. Name-based
// UUIDs are random-looking; sortable ones keep the order of the fields they are made of.
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
  return uuidText(bytes.toString('hex'));
}

/** 32 hex digits in the UUID's 8-4-4-4-12 form. */
function uuidText(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A UUID (version 8 layout) made of the given fields, each `[value, bits]`, packed most significant first:
 * ids compare as their fields do. Inserted in that order, they go to the right edge of a btree instead of to
 * random pages. Different fields always give different ids; a value that does not fit its bits throws.
 */
export function sortableUuid(fields: ReadonlyArray<readonly [value: bigint, bits: number]>): string {
  const width = fields.reduce((sum, [, bits]) => sum + bits, 0);
  if (width > 122) throw new RangeError(`sortableUuid: ${width} bits do not fit in a UUID's 122`);
  let packed = 0n;
  for (const [value, bits] of fields) {
    if (value < 0n || value >= 1n << BigInt(bits))
      throw new RangeError(`sortableUuid: ${value} does not fit in ${bits} bits`);
    packed = (packed << BigInt(bits)) | value;
  }
  packed <<= BigInt(122 - width);
  // 48 bits, the version (8), 12 bits, the variant (binary 10), 62 bits: the fixed bits are the same in every
  // id, so they do not change the order.
  const uuid =
    ((packed >> 74n) << 80n) |
    (0x8n << 76n) |
    (((packed >> 62n) & 0xfffn) << 64n) |
    (0x2n << 62n) |
    (packed & ((1n << 62n) - 1n));
  return uuidText(uuid.toString(16).padStart(32, '0'));
}
