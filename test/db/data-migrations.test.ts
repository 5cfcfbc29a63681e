// The migrations that convert existing rows, each applied to a database holding rows written before it: the
// database is migrated up to the file before, the rows are inserted, then the rest is applied.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import t, { type Test } from 'tap';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { createEmptyDatabase, query } from '../helpers/database.ts';

const log = pino({ level: 'silent' });

/** A database migrated up to (not including) `version`, and a function applying the rest of sql/. */
async function migratedBefore(
  t: Test,
  version: number,
): Promise<{ url: string; applyRest: () => Promise<void> }> {
  const url = await createEmptyDatabase(t);
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const files = await readMigrationFiles();
  const copy = async (wanted: (v: number) => boolean) => {
    for (const file of files.filter((f) => wanted(f.version)))
      await writeFile(join(dir, file.name), file.sql);
  };
  await copy((v) => v < version);
  await migrate(url, log, pathToFileURL(`${dir}/`));
  return {
    url,
    applyRest: async () => {
      await copy((v) => v >= version);
      await migrate(url, log, pathToFileURL(`${dir}/`));
    },
  };
}

const RECURRENCE = `INSERT INTO checkout_recorrencias (vendedor_id, cartao_token, bandeira, valor_centavos, periodicidade,
  dia_ancora, proxima_cobranca, status, motivo_hold, hold_em, hold_avisado_em)
  VALUES ('v', 'tok', 'visa', 100, 'mensal', 10, '2031-03-10', $1, $2, $3, $4) RETURNING id`;

t.test('0010: holds announced before keep their mark; the others stay new', async (t) => {
  const { url, applyRest } = await migratedBefore(t, 10);
  const row = async (holdEm: string, announcedAt: string | null) => {
    const [inserted] = await query<{ id: number }>(url, RECURRENCE, ['hold', 'teste', holdEm, announcedAt]);
    return inserted?.id;
  };
  const announced = await row('2031-03-10 10:00Z', '2031-03-10 18:00Z');
  const heldAgain = await row('2031-03-11 10:00Z', '2031-03-10 18:00Z');
  const never = await row('2031-03-11 10:00Z', null);
  await applyRest();
  t.same(
    await query(
      url,
      `SELECT id, hold_avisado_em IS DISTINCT FROM hold_em AS nova FROM checkout_recorrencias ORDER BY id`,
    ),
    [
      { id: announced, nova: false },
      { id: heldAgain, nova: true },
      { id: never, nova: true },
    ],
  );
});

t.test(
  '0013: an undated hold is dated by its last change and stays new; the others keep their dates',
  async (t) => {
    const { url, applyRest } = await migratedBefore(t, 13);
    const [undated] = await query<{ id: number }>(url, RECURRENCE, [
      'hold',
      'teste',
      null,
      '2031-03-09 18:00Z',
    ]);
    const [dated] = await query<{ id: number }>(url, RECURRENCE, [
      'hold',
      'teste',
      '2031-03-10 10:00Z',
      null,
    ]);
    const [active] = await query<{ id: number }>(url, RECURRENCE, ['ativo', null, null, null]);
    await query(url, `UPDATE checkout_recorrencias SET atualizado_em = '2031-03-11 09:00Z' WHERE id = $1`, [
      undated?.id,
    ]);
    await applyRest();
    t.same(
      await query(
        url,
        `SELECT id, hold_em, hold_avisado_em IS DISTINCT FROM hold_em AS nova FROM checkout_recorrencias ORDER BY id`,
      ),
      [
        { id: undated?.id, hold_em: new Date('2031-03-11T09:00:00Z'), nova: true },
        { id: dated?.id, hold_em: new Date('2031-03-10T10:00:00Z'), nova: true },
        { id: active?.id, hold_em: null, nova: false },
      ],
    );
    t.same(
      await query(
        url,
        `SELECT convalidated FROM pg_constraint WHERE conname = 'checkout_recorrencias_hold_tem_data'`,
      ),
      [{ convalidated: true }],
      'the rule holds for the existing rows too (0014 validated it)',
    );
  },
);

t.test('0012: only the refused requests recorded as declines become rejeitada', async (t) => {
  const { url, applyRest } = await migratedBefore(t, 11);
  const [recurrence] = await query<{ id: number }>(url, RECURRENCE, ['ativo', null, null, null]);
  const attempt = (table: string, n: number, code: string, reversible: boolean, gatewayRef: string | null) =>
    query(
      url,
      `INSERT INTO ${table} (id, recorrencia_id, ciclo, tentativa, chave_idempotencia, status, valor_centavos,
         moeda, cartao_token, data_negocio, codigo_recusa, recusa_reversivel, gateway_ref, resolvida_em)
       VALUES ($2::int, $1, '2031-03-10', $2::int, $3 || $2::text, 'recusada', 100, 'BRL', 'tok', '2031-03-10', $4,
         $5, $6, now())`,
      [recurrence?.id, n, table, code, reversible, gatewayRef],
    );
  const rows: Array<[string, boolean, string | null, string]> = [
    ['invalid_request', false, null, 'rejeitada'],
    ['unprocessable', false, null, 'rejeitada'],
    ['invalid_idempotency_key', false, null, 'rejeitada'],
    ['r1', false, null, 'recusada'], // an issuer's code in lower case, with no charge reference
    ['do_not_honor', false, null, 'recusada'],
    ['51', true, 'ch_1', 'recusada'],
    ['invalid_request', false, 'ch_2', 'recusada'], // a charge reference: the gateway answered it
    ['invalid_request', true, null, 'recusada'], // reversible: a decline
  ];
  const tables = ['checkout_recorrencia_cobrancas', 'checkout_recorrencia_cobrancas_arquivo'];
  for (const table of tables) {
    for (const [i, [code, reversible, ref]] of rows.entries())
      await attempt(table, i + 1, code, reversible, ref);
  }
  await applyRest();
  for (const table of tables) {
    t.same(
      (await query<{ status: string }>(url, `SELECT status FROM ${table} ORDER BY tentativa`)).map(
        (r) => r.status,
      ),
      rows.map(([, , , expected]) => expected),
      table,
    );
  }
  await t.rejects(
    query(url, `UPDATE checkout_recorrencia_cobrancas_arquivo SET status = 'outra' WHERE tentativa = 1`),
    /checkout_recorrencia_cobrancas_status_valido/,
    'the archive keeps the check',
  );
  await t.rejects(
    query(url, `UPDATE checkout_recorrencia_cobrancas SET status = 'outra' WHERE tentativa = 1`),
    /checkout_recorrencia_cobrancas_status_valido/,
    'the wider check still refuses other statuses',
  );
});
