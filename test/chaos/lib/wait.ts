// Waiting without fixed sleeps: poll a probe (the database, the ledger, a log) until it answers, with a
// deadline that names what was awaited. Every loop in the suite is bounded by one of these.
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from '../../helpers/processes.ts';

/** Polls `probe` until it returns something other than undefined; the error at `timeoutMs` names `what`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 200,
): Promise<T> {
  try {
    return await eventually(async () => probe(), timeoutMs, intervalMs);
  } catch (error) {
    throw new Error(`waiting for ${what}: ${(error as Error).message}`, { cause: error });
  }
}

/** Waits until the given wall-clock instant (a scheduled fault's moment), never past `Date.now()`. */
export async function sleepUntil(at: number): Promise<void> {
  const wait = at - Date.now();
  if (wait > 0) await sleep(wait);
}

/**
 * Starts `work` in the background and returns how to await it later. Its failure meanwhile (while the
 * scenario injects other faults) is kept for that await instead of ending the process as an unhandled
 * rejection: the no-op handler marks it handled, and the later await still throws it.
 */
export function inBackground<T>(work: Promise<T>): () => Promise<T> {
  work.catch(() => undefined);
  return () => work;
}
