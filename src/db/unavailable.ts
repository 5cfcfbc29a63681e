// Telling "the database is not there right now" (refused, reset, restarting, shutting down, too many
// connections) from real errors, so that start-up retries the former and fails fast on the latter. Also
// guards pg clients that libraries open without an 'error' listener.
import pg from 'pg';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
  'EADDRNOTAVAIL',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// SQLSTATE classes 08 (connection exception) and 57P (operator intervention: admin shutdown, crash
// shutdown, cannot connect now), and 53300 (too many connections).
const SQLSTATE = /^(08...|57P0[1-3]|53300)$/;
// A connection that dies as it opens (Postgres shutting down a moment after accepting it) surfaces without a
// code: slonik's driver says "Client is pending destroy" when it was about to hand it out, and pg says "not
// queryable" when slonik then queries it at pool creation. A worker starting up exited on each.
const MESSAGES =
  /connection terminated|terminating connection|the database system is (starting up|shutting down|in recovery mode)|Connection refused|timeout exceeded when trying to connect|Client is pending destroy|Client has encountered a connection error and is not queryable/i;

/** The error and its causes (libraries wrap the driver's error), at most five deep. */
function* causes(error: unknown): Generator<Error & { code?: unknown }> {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    yield current;
    current = current.cause;
  }
}

export function isDatabaseUnavailable(error: unknown): boolean {
  for (const current of causes(error)) {
    const { code } = current;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || SQLSTATE.test(code))) return true;
    if (MESSAGES.test(current.message)) return true;
  }
  return false;
}

// PgBouncer's words when its pool or its client limit is full (it reports them as protocol errors, 08P01).
const POOLER_FULL = /query_wait_timeout|no more connections allowed/;

/**
 * Postgres refused a connection over max_connections or a role's or database's CONNECTION LIMIT, or a
 * PgBouncer in front of it had no server connection to give within query_wait_timeout.
 */
export function isTooManyConnections(error: unknown): boolean {
  for (const current of causes(error)) {
    if (current.code === '53300' || POOLER_FULL.test(current.message)) return true;
  }
  return false;
}

let guarded = false;

/**
 * slonik's driver opens a short-lived pg Client at pool creation (to read type oids) without an 'error'
 * listener; a server restart in that window killed a worker with an unhandled 'error' event (found by the
 * fault suite). Every pg Client gets a fallback listener when it connects without one: the failure still
 * rejects the pending call, it just no longer crashes the process. pg-pool and pg-boss add their own.
 */
export function guardPgClientErrors(): void {
  if (guarded) return;
  guarded = true;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- re-applied below with the client as `this`
  const connect = pg.Client.prototype.connect;
  pg.Client.prototype.connect = function (this: pg.Client, ...args: unknown[]) {
    if (this.listenerCount('error') === 0) this.on('error', () => undefined);
    return (connect as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof connect;
}
