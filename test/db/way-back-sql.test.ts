// sql/way-back.sql, the hand-back lists for a return to the old system, run against a migrated database
// holding one recurrence of each kind: each must land in its list and only there, since a charge left out
// of lists 1 and 2 is charged again by the old system.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { archiveEndedBatch } from '../../src/db/arquivo.ts';
import { readMigrationFiles } from '../../src/db/migrator.ts';
import { query } from '../helpers/database.ts';
import { createHarness, insertRecurrence } from '../helpers/harness.ts';
import {
  psqlOnPath,
  splitStatements,
  table,
  viaDriver,
  viaPsql,
  type ResultSet,
} from '../helpers/sql-file.ts';

const FILE = fileURLToPath(new URL('../../sql/way-back.sql', import.meta.url));
const CUTOVER = '2031-03-10';
const BEFORE = '2031-03-09';

async function seed(t: Test): Promise<string> {
  const h = await createHarness(t);
  await query(
    h.url,
    // A cutover mistyped later, then replaced (--replace-cutover) by the one in force: the latest import's.
    `INSERT INTO importacoes_legado (arquivo, quem, corte, contagens) VALUES
       ('antiga.jsonl', 'ana', '2031-02-01', '{}'), ('errada.jsonl', 'ana', '2031-04-10', '{}'),
       ('export.jsonl', 'ana', $1, '{}')`,
    [CUTOVER],
  );
  const ids: Record<string, number> = {};
  for (const name of [
    'charged',
    'unknown',
    'blocked',
    'unsent',
    'changed',
    'declined',
    'untouched',
    'archived',
  ]) {
    ids[name] = await insertRecurrence(h.pool, { proxima_cobranca: CUTOVER });
    await query(h.url, `UPDATE checkout_recorrencias SET id_legado = $1 WHERE id = $2`, [
      `L-${name}`,
      ids[name],
    ]);
  }
  ids['created'] = await insertRecurrence(h.pool, { proxima_cobranca: CUTOVER, valor_centavos: 1234 });
  const attempt = `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia,
      status, valor_centavos, moeda, cartao_token, data_negocio, envios, codigo_recusa, recusa_reversivel,
      gateway_ref, resolvida_em)
    VALUES ($1::bigint, $2::date, 1, 'k-' || $1 || '-' || $2, $3::text, 4990, 'BRL', 'tok_x', $2, $4, $5, $6, $7,
      CASE WHEN $3 = 'pendente' THEN NULL ELSE now() END)`;
  const at = (name: string, ...rest: unknown[]) => query(h.url, attempt, [ids[name], ...rest]);
  await at('charged', CUTOVER, 'aprovada', 1, null, null, 'ch_1');
  // A rehearsal's charge before the cutover was the old system's business, already handed over.
  await at('charged', BEFORE, 'aprovada', 1, null, null, 'ch_0');
  await at('unknown', CUTOVER, 'pendente', 2, null, null, null);
  await at('blocked', CUTOVER, 'pendente', 1, 'idempotency_key_expired', null, null);
  await at('unsent', CUTOVER, 'pendente', 0, null, null, null);
  await at('declined', CUTOVER, 'recusada', 1, '51', true, 'ch_2');
  await at('created', CUTOVER, 'aprovada', 1, null, null, 'ch_3');
  // Charged, then declined, then cancelled here, and archived since by limpar_recorrencias_antigas.
  await at('archived', CUTOVER, 'aprovada', 1, null, null, 'ch_9');
  await at('archived', '2031-04-10', 'recusada', 1, '51', true, 'ch_8');
  await query(
    h.url,
    `INSERT INTO checkout_recorrencias_alteracoes (recorrencia_id, quem, campo, valor_anterior, valor_novo)
     VALUES ($1, 'checkout', 'status', 'ativo', 'cancelado')`,
    [ids['archived']],
  );
  await query(
    h.url,
    `UPDATE checkout_recorrencias SET status = 'cancelado', encerrada_em = now() - interval '200 days' WHERE id = $1`,
    [ids['archived']],
  );
  t.match(await archiveEndedBatch(h.pool, 180, 100), { recorrencias: 1, cobrancas: 2 }, 'archived');
  await query(
    h.url,
    `INSERT INTO checkout_recorrencias_alteracoes (recorrencia_id, quem, campo, valor_anterior, valor_novo)
     VALUES ($1, 'checkout', 'status', 'ativo', 'cancelado'), ($1, 'checkout', 'valor_centavos', '4990', '5990'),
            ($1, 'checkout', 'status', 'cancelado', 'ativo')`,
    [ids['changed']],
  );
  return h.url;
}

function checkLists(t: Test, sets: ResultSet[]): void {
  t.equal(sets.length, splitStatements(readFileSync(FILE, 'utf8')).length, 'one table per statement');
  t.match(
    table(sets, 'gateway_ref'),
    [
      { id_legado: 'L-archived', ciclo: CUTOVER, gateway_ref: 'ch_9', arquivada: 't' },
      { id_legado: 'L-charged', ciclo: CUTOVER, valor_centavos: '4990', moeda: 'BRL', gateway_ref: 'ch_1' },
    ],
    '1: the charges made here since the cutover, of imported recurrences, archived ones included',
  );
  t.equal(table(sets, 'gateway_ref').length, 2, '1: nothing else');
  t.same(
    table(sets, 'chave_idempotencia').map((row) => [row['id_legado'], row['envios'], row['bloqueada']]),
    [
      ['L-blocked', '1', 't'],
      ['L-unknown', '2', 'f'],
    ],
    '2: every attempt sent with its answer unknown, blocked ones included; never the unsent one',
  );
  t.same(
    table(sets, 'campos_alterados').map((row) => [row['id_legado'], row['campos_alterados']]),
    [
      ['', ''],
      ['L-archived', 'status'],
      ['L-changed', 'status, valor_centavos'],
    ],
    '3: the recurrence created here, then the ones changed here, the archived cancellation included',
  );
  t.match(table(sets, 'campos_alterados')[0], { valor_centavos: '1234', proxima_cobranca: CUTOVER });
  t.match(table(sets, 'campos_alterados')[1], { status: 'cancelado', arquivada: 't' });
  t.same(
    table(sets, 'codigo_recusa').map((row) => [row['id_legado'], row['status'], row['codigo_recusa']]),
    [
      ['L-archived', 'recusada', '51'],
      ['L-declined', 'recusada', '51'],
    ],
    '4: the declines, the archived one included',
  );
}

t.test('the file is plain SQL, and the migrator ignores it', async (t) => {
  t.notMatch(readFileSync(FILE, 'utf8'), /^\s*\\/m, 'no psql meta-commands');
  t.notOk((await readMigrationFiles()).some((file) => file.name === 'way-back.sql'));
});

t.test('sql/way-back.sql through the pg driver', async (t) => {
  checkLists(t, await viaDriver(await seed(t), FILE));
});

t.test('sql/way-back.sql as operators run it: psql when on PATH', async (t) => {
  const url = await seed(t);
  if (!psqlOnPath()) {
    t.comment('psql is not on PATH: the driver test above covers the lists');
    return;
  }
  checkLists(t, viaPsql(t, url, FILE));
});
