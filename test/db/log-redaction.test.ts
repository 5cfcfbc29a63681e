// Errors from the database layer carry data: slonik puts a query's values and the offending row on its errors,
// Postgres describes a CHECK violation with the whole row, a URL error keeps its input. Logged, none of it may
// show a card token or a password, while the error stays recognisable.
import { sql } from 'slonik';
import t from 'tap';
import { z } from 'zod';
import { createDbPool } from '../../src/db/pool.ts';
import { capturedLog } from '../helpers/captured-log.ts';
import { createMigratedDatabase } from '../helpers/database.ts';

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
