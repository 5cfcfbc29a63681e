// The import's bulk upsert on its own: an old id already archived here (or purged from the archive since) is
// protected, never inserted again, and a recurrence this service owns is never written, whatever commits while
// the import runs.
import pg from 'pg';
import t, { type Test } from 'tap';
import { createDbPool } from '../../src/db/pool.ts';
import { purgeArchiveBatch } from '../../src/db/arquivo.ts';
import { lockOverwritableRecurrences, upsertImportedBatch } from '../../src/db/importacao.ts';
import type { ImportedRecurrence } from '../../src/domain/legacy-import.ts';
import { createMigratedDatabase, lockWaiters, query } from '../helpers/database.ts';
import { eventually } from '../helpers/processes.ts';

const row = (id: string): ImportedRecurrence => ({
  id_legado: id,
  vendedor_id: 'loja',
  cliente_ref: null,
  cartao_token: 'tok_aprova_x',
  bandeira: 'visa',
  valor_centavos: 4990,
  moeda: 'BRL',
  descricao: '',
  periodicidade: 'mensal',
  dia_ancora: 10,
  proxima_cobranca: '2031-03-10',
  total_ciclos: null,
  ciclos_cobrados: 0,
  status: 'ativo',
  motivo_hold: null,
  referencia_externa: null,
  criado_em: null,
});

/** A database where L-1 was imported, and a pool of two connections to it. */
async function importedL1(t: Test) {
  const url = await createMigratedDatabase(t);
  const pool = await createDbPool(url, { maxConnections: 2, applicationName: 'test' });
  t.teardown(() => pool.end());
  await pool.transaction((tx) => upsertImportedBatch(tx, [row('L-1')]));
  return { url, pool };
}

t.test('an archived old id is protected: the import does not bring the recurrence back', async (t) => {
  const url = await createMigratedDatabase(t);
  await query(
    url,
    `INSERT INTO checkout_recorrencias_arquivo (id, id_legado, vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca, status)
     VALUES (1, 'L-1', 'loja', 't', 'visa', 100, 'mensal', 10, '2020-01-10', 'concluido')`,
  );
  const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'test' });
  t.teardown(() => pool.end());
  const counts = await pool.transaction((tx) => upsertImportedBatch(tx, [row('L-1'), row('L-2')]));
  t.same(counts, { inseridas: 1, atualizadas: 0, protegidas: 1 });
  t.same(await query(url, 'SELECT id_legado FROM checkout_recorrencias ORDER BY id_legado'), [
    { id_legado: 'L-2' },
  ]);
});

t.test('an old id purged from the archive stays protected: the import does not bring it back', async (t) => {
  const url = await createMigratedDatabase(t);
  await query(
    url,
    `INSERT INTO checkout_recorrencias_arquivo (id, id_legado, vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade, dia_ancora, proxima_cobranca, status, arquivado_em)
     VALUES (1, 'L-1', 'loja', 't', 'visa', 100, 'mensal', 10, '2020-01-10', 'cancelado', now() - interval '10 days')`,
  );
  const pool = await createDbPool(url, { maxConnections: 1, applicationName: 'test' });
  t.teardown(() => pool.end());
  t.match(await purgeArchiveBatch(pool, 1, 100), { recorrencias: 1 });
  t.same(await query(url, 'SELECT count(*)::int AS n FROM checkout_recorrencias_arquivo'), [{ n: 0 }]);
  const counts = await pool.transaction((tx) => upsertImportedBatch(tx, [row('L-1'), row('L-2')]));
  t.same(counts, { inseridas: 1, atualizadas: 0, protegidas: 1 });
  t.same(await query(url, 'SELECT id_legado FROM checkout_recorrencias ORDER BY id_legado'), [
    { id_legado: 'L-2' },
  ]);
});

t.test(
  'a recurrence charged here while the import waited for it is protected, not overwritten',
  async (t) => {
    const { url, pool } = await importedL1(t);
    // A charge's phase 1 holds the recurrence and creates its attempt (it commits while the import waits).
    const charge = new pg.Client({ connectionString: url });
    await charge.connect();
    t.teardown(() => charge.end());
    await charge.query('BEGIN');
    await charge.query(`SELECT 1 FROM checkout_recorrencias WHERE id_legado = 'L-1' FOR UPDATE`);
    await charge.query(
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos,
         moeda, cartao_token, data_negocio)
       SELECT id, proxima_cobranca, 1, 'k-1', valor_centavos, moeda, cartao_token, proxima_cobranca
       FROM checkout_recorrencias WHERE id_legado = 'L-1'`,
    );
    // The re-export moved the old system's next date: an overwrite would make the charged cycle due again.
    const importing = pool.transaction(async (tx) => {
      await lockOverwritableRecurrences(tx, ['L-1']);
      return upsertImportedBatch(tx, [{ ...row('L-1'), proxima_cobranca: '2031-02-10' }]);
    });
    await lockWaiters(url);
    await charge.query('COMMIT');
    t.same(await importing, { inseridas: 0, atualizadas: 0, protegidas: 1 });
    t.same(
      await query(url, `SELECT proxima_cobranca::text FROM checkout_recorrencias WHERE id_legado = 'L-1'`),
      [{ proxima_cobranca: '2031-03-10' }],
    );
  },
);

t.test(
  'a recurrence owned here and identical to the export is left alone, even when a charge commits meanwhile',
  async (t) => {
    const { url, pool } = await importedL1(t);
    // Phase 1 of a charge committed its attempt without changing the recurrence: owned, and still identical.
    await query(
      url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, valor_centavos,
         moeda, cartao_token, data_negocio)
       SELECT id, proxima_cobranca, 1, 'k-1', valor_centavos, moeda, cartao_token, proxima_cobranca
       FROM checkout_recorrencias WHERE id_legado = 'L-1'`,
    );
    // Phase 3 records the approval and holds the row until it commits, while the same export is imported again.
    const charge = new pg.Client({ connectionString: url });
    await charge.connect();
    t.teardown(() => charge.end());
    await charge.query('BEGIN');
    await charge.query(
      `UPDATE checkout_recorrencias SET proxima_cobranca = '2031-04-10', ciclos_cobrados = 1 WHERE id_legado = 'L-1'`,
    );
    let settled = false;
    const importing = pool
      .transaction(async (tx) => {
        await lockOverwritableRecurrences(tx, ['L-1']);
        return upsertImportedBatch(tx, [row('L-1')]);
      })
      .finally(() => {
        settled = true;
      });
    // Either the import is done without the row, or it waits for the row (then writes its latest version).
    await eventually(async () => {
      if (settled) return true;
      const [waiting] = await query<{ n: number }>(
        url,
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      return waiting !== undefined && waiting.n > 0 ? true : undefined;
    });
    await charge.query('COMMIT');
    t.same(await importing, { inseridas: 0, atualizadas: 0, protegidas: 0 }, 'unchanged, not written');
    t.same(
      await query(
        url,
        `SELECT proxima_cobranca::text, ciclos_cobrados FROM checkout_recorrencias WHERE id_legado = 'L-1'`,
      ),
      [{ proxima_cobranca: '2031-04-10', ciclos_cobrados: 1 }],
      'the approval stands: the charged cycle is not due again',
    );
  },
);
