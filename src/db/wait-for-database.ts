// Start-up gate: waits (with capped exponential backoff, logging every attempt) until the database answers,
// so a role started while Postgres is down comes up by itself instead of crash-looping. A refusal no wait can
// cure (wrong password, no such database or role, SSL required) ends start-up at once, as a configuration error.
import pg from 'pg';
import { ConfigError } from '../config.ts';
import type { Logger } from '../log.ts';
import { isDatabaseUnavailable, isTooManyConnections } from './unavailable.ts';

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
      // Only an answer from the server itself (a SQLSTATE) is a refusal: a network error is waited out.
      if (error instanceof pg.DatabaseError && !isDatabaseUnavailable(error)) throw refusal(error);
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

/** The database answered and refused us: the message names the variable to fix (the URL itself is never shown). */
function refusal(error: unknown): ConfigError {
  const { code, message } = (error ?? {}) as { code?: string; message?: string };
  return new ConfigError([
    `DATABASE_URL: the database refused the connection (${code ?? 'no code'}: ${message ?? 'no message'}); check its user, password, database name and sslmode`,
  ]);
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
