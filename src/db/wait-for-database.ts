// Start-up gate: waits (with capped exponential backoff, logging every attempt) until the database answers,
// so a role started while Postgres is down comes up by itself instead of crash-looping.
import pg from 'pg';
import type { Logger } from '../log.ts';
import { isTooManyConnections } from './unavailable.ts';

export async function waitForDatabase(
  url: string,
  log: Logger,
  options: { signal?: AbortSignal; maxDelayMs?: number; connectTimeoutMs?: number } = {},
): Promise<void> {
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  let delayMs = 250;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    });
    // A connection that drops mid-probe emits 'error'; the failed query below already reports it.
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      if (attempt > 1) log.info({ attempt }, 'database reachable');
      return;
    } catch (error) {
      log.warn(
        {
          attempt,
          retryInMs: delayMs,
          err: { message: (error as Error).message, code: (error as { code?: string }).code },
        },
        isTooManyConnections(error)
          ? 'database refused more connections, waiting'
          : 'database unreachable, waiting',
      );
    } finally {
      await client.end().catch(() => undefined);
    }
    await sleepUnlessAborted(delayMs, options.signal);
    delayMs = Math.min(maxDelayMs, delayMs * 2);
  }
}

function sleepUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
