// Surviving Postgres going away: which errors count as "database unavailable" (real errors from a real
// server, and the driver's own when a connection dies as it opens), start-up retries on those only, and pg
// clients opened without an 'error' listener no longer crash the process when their backend is terminated.
import pg from 'pg';
import t from 'tap';
import {
  guardPgClientErrors,
  isDatabaseUnavailable,
  isTooManyConnections,
} from '../../src/db/unavailable.ts';
import { retryWhileDatabaseUnavailable } from '../../src/lifecycle.ts';
import { createDbPool } from '../../src/db/pool.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { adminUrl, createMigratedDatabase, query } from '../helpers/database.ts';
import { fatalAfterReadyProxy } from '../helpers/fatal-after-ready.ts';

async function refusedConnectionError(): Promise<unknown> {
  // Port 1 on loopback: nothing listens there, so the connection is refused.
  const client = new pg.Client({ host: '127.0.0.1', port: 1, user: 'x', database: 'x' });
  return client.connect().then(
    () => new Error('unexpectedly connected'),
    (error: unknown) => error,
  );
}

async function terminatedBackendError(): Promise<unknown> {
  const client = new pg.Client({ connectionString: adminUrl() });
  client.on('error', () => undefined);
  await client.connect();
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
  const pending = client.query('select pg_sleep(30)').then(
    () => new Error('query was not interrupted'),
    (error: unknown) => error,
  );
  await query(adminUrl(), 'select pg_terminate_backend($1)', [pid]);
  const error = await pending;
  await client.end().catch(() => undefined);
  return error;
}

t.test('connection failures are recognised; ordinary SQL errors are not', async (t) => {
  const refused = await refusedConnectionError();
  t.equal((refused as { code?: string }).code, 'ECONNREFUSED');
  t.ok(isDatabaseUnavailable(refused), 'connection refused');

  const terminated = await terminatedBackendError();
  t.ok(isDatabaseUnavailable(terminated), `backend terminated (${(terminated as Error).message})`);

  const wrapped = new Error('slonik wrapper', { cause: refused });
  t.ok(isDatabaseUnavailable(wrapped), 'found through error.cause');

  const syntax = await query(adminUrl(), 'selec 1').then(
    () => null,
    (error: unknown) => error,
  );
  t.equal((syntax as { code?: string }).code, '42601');
  t.notOk(isDatabaseUnavailable(syntax), 'a syntax error is a real error');
  t.notOk(isDatabaseUnavailable(new Error('schema is not migrated')), 'plain errors are real errors');
  t.notOk(isDatabaseUnavailable('ECONNREFUSED'), 'non-Error values are not classified');
});

t.test('a full connection budget is told apart from an unreachable database', async (t) => {
  t.notOk(
    isTooManyConnections(await refusedConnectionError()),
    'a refused TCP connection is not a full budget',
  );
  // Postgres's own refusal (53300) is covered with a real role limit in test/roles/startup.test.ts. PgBouncer
  // reports its refusals as protocol errors (08P01): query_wait_timeout as PgBouncer 1.18 sent it here, and
  // the max_client_conn refusal with the text of PgBouncer's source.
  for (const message of ['query_wait_timeout', 'no more connections allowed (max_client_conn)']) {
    const pooler = Object.assign(new Error(message), { code: '08P01' });
    t.ok(isTooManyConnections(new Error('slonik wrapper', { cause: pooler })), message);
    t.ok(isDatabaseUnavailable(pooler), `${message} is also retried at start-up`);
  }
});

t.test('a pg client without an error listener survives its backend being terminated', async (t) => {
  guardPgClientErrors();
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  t.ok(client.listenerCount('error') >= 1, 'a fallback listener was attached on connect');
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
  // (events.once would reject on 'error' and so count as a listener itself.)
  const ended = new Promise<void>((resolve) => client.once('end', resolve));
  await query(adminUrl(), 'select pg_terminate_backend($1)', [pid]);
  // Without the fallback listener, the 'error' event emitted here is unhandled and ends this process.
  await ended;
  const after = await client.query('select 1').then(
    () => 'answered',
    (error: unknown) => (error as Error).message,
  );
  t.not(after, 'answered', 'the terminated client reports failures to its callers instead');
});

t.test('start-up is retried while the database is unavailable, then succeeds', async (t) => {
  const { log, entries } = capturedLog('info');
  const refused = await refusedConnectionError();
  let calls = 0;
  const result = await retryWhileDatabaseUnavailable(log, new AbortController().signal, async () => {
    calls++;
    if (calls <= 2) throw refused;
    return 'started';
  });
  t.equal(result, 'started');
  t.equal(calls, 3);
  const waits = entries.filter((line) => line.msg === 'database unreachable during start-up, waiting');
  t.same(
    waits.map((line) => line.attempt),
    [1, 2],
    'each retry is logged with its attempt number',
  );
});

t.test('a connection that dies as it opens, while a worker opens its pool, is waited out', async (t) => {
  const url = await createMigratedDatabase(t);
  // Connection 1 is the one slonik opens at pool creation to read type oids; the next ones are the pool's own,
  // opened at once by holdConnections. A worker exited on each (seen in the fault suite for the second).
  for (const [victim, what] of [
    [1, 'the type-oid connection at pool creation'],
    [2, 'a pool connection as it is handed out'],
  ] as const) {
    const proxy = await fatalAfterReadyProxy(t, url, victim);
    const { log, entries } = capturedLog('info');
    let calls = 0;
    const pool = await retryWhileDatabaseUnavailable(log, new AbortController().signal, async () => {
      calls++;
      return createDbPool(proxy.url, { maxConnections: 3, applicationName: 'test', holdConnections: true });
    });
    await pool.end();
    t.equal(proxy.killed(), 1, `${what}: killed once`);
    t.equal(calls, 2, `${what}: start-up tried again`);
    t.match(
      entries.find((line) => line.msg === 'database unreachable during start-up, waiting'),
      { err: { message: /Client is pending destroy|not queryable/ } },
      `${what}: the wait is logged with the driver's message`,
    );
  }
});

t.test('any other start-up error fails at once', async (t) => {
  const { log } = capturedLog('info');
  let calls = 0;
  await t.rejects(
    retryWhileDatabaseUnavailable(log, new AbortController().signal, async () => {
      calls++;
      throw new Error('schema is not migrated');
    }),
    { message: 'schema is not migrated' },
  );
  t.equal(calls, 1);
});

t.test('a stop request ends the waiting', async (t) => {
  const { log, entries } = capturedLog('info');
  const refused = await refusedConnectionError();
  const controller = new AbortController();
  let calls = 0;
  const retrying = retryWhileDatabaseUnavailable(log, controller.signal, async () => {
    calls++;
    throw refused;
  });
  // Abort as soon as the first wait is logged (the destination is synchronous).
  const deadline = Date.now() + 5_000;
  while (entries.length === 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  controller.abort();
  await t.rejects(retrying);
  t.equal(calls, 1, 'no further attempt after the stop request');
});
