// Errors from the database layer carry data: slonik puts a query's values and the offending row on its errors,
// Postgres describes a CHECK violation with the whole row, a URL error keeps its input. Logged, none of it may
// show a card token or a password, while the error stays recognisable.
import pg from 'pg';
import { sql } from 'slonik';
import t from 'tap';
import { z } from 'zod';
import { createDbPool } from '../../src/db/pool.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { adminUrl, createMigratedDatabase, query } from '../helpers/database.ts';

const TOKEN = 'tok_live_4111_segredo';

async function failure(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
}

t.test('database and URL errors are logged without the values, rows or input they carry', async (t) => {
  const url = await createMigratedDatabase(t);
  const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'test' });
  t.teardown(() => pool.end());
  const { log, entries, text } = capturedLog('info');

  const errors = {
    // A row that fails its schema: slonik's SchemaValidationError carries the row and the query's values.
    schema: await failure(() =>
      pool.one(sql.type(z.object({ cartao_token: z.number() }))`SELECT ${TOKEN}::text AS cartao_token`),
    ),
    // A CHECK violation: Postgres's detail lists the whole row; slonik's error carries the values too.
    check: await failure(() =>
      pool.query(sql.unsafe`
        INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade,
          dia_ancora, proxima_cobranca)
        VALUES ('v', ${TOKEN}, 'visa', 0, 'mensal', 10, '2031-01-10')`),
    ),
    url: await failure(() => new URL('postgres://app:hunter2@/recorrencias?host=/run/postgresql')),
  };
  for (const [kind, error] of Object.entries(errors)) log.error({ err: error, kind }, 'it failed');

  const output = text();
  t.equal(entries.length, 3);
  t.notMatch(output, /segredo/, 'no card token');
  t.notMatch(output, /hunter2/, 'no password');
  const [schema, check, invalid] = entries;
  t.match(schema?.err, { type: 'SchemaValidationError', message: /Query returned rows that do not conform/ });
  t.match(check?.err, { message: /checkout_recorrencias_valor_positivo/ });
  t.match(invalid?.err, { message: /Invalid URL/ });
});

t.test(
  'an idle pool connection that dies is logged without the driver object pg-pool attaches',
  async (t) => {
    const url = await createMigratedDatabase(t);
    // pg-boss's own pool is a pg Pool: its 'error' event is what the service logs as "pg-boss error".
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    t.teardown(() => pool.end());
    const client = await pool.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    client.release();
    const failed = new Promise<Error>((resolve) => pool.once('error', resolve));
    await query(adminUrl(), 'SELECT pg_terminate_backend($1)', [pid]);
    const error = await failed;
    t.ok('client' in error, 'pg-pool attached the client to the error');

    const { log, entries, text } = capturedLog('info');
    log.error({ err: error }, 'pg-boss error');
    const logged = entries[0]?.err as Record<string, unknown> | undefined;
    t.match(logged, { message: /terminating connection due to administrator command/, code: '57P01' });
    t.notOk(logged !== undefined && 'client' in logged, 'no client field');
    t.notMatch(text(), /secretKey|_types|processID/, 'none of the connection state');
    t.ok(text().length < 2_000, `one short line (${text().length} characters)`);
  },
);
