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

t.test('0012: only the refused requests recorded as declines become rejeitada', async (t) => {
  const { url, applyRest } = await migratedBefore(t, 11);
  const [recurrence] = await query<{ id: number }>(url, RECURRENCE, ['ativo', null, null, null]);
  const attempt = (n: number, code: string, reversible: boolean, gatewayRef: string | null) =>
    query(
      url,
      `INSERT INTO checkout_recorrencia_cobrancas (recorrencia_id, ciclo, tentativa, chave_idempotencia, status,
         valor_centavos, moeda, cartao_token, data_negocio, codigo_recusa, recusa_reversivel, gateway_ref, resolvida_em)
       VALUES ($1, '2031-03-10', $2::int, 'k' || $2::text, 'recusada', 100, 'BRL', 'tok', '2031-03-10', $3, $4, $5, now())`,
      [recurrence?.id, n, code, reversible, gatewayRef],
    );
  await attempt(1, 'invalid_request', false, null);
  await attempt(2, 'unprocessable', false, null);
  await attempt(3, 'r1', false, null); // an issuer's code in lower case, with no charge reference
  await attempt(4, '51', true, 'ch_1');
  await attempt(5, 'do_not_honor', false, null);
  await applyRest();
  t.same(
    await query(
      url,
      `SELECT tentativa, status, recusa_reversivel FROM checkout_recorrencia_cobrancas ORDER BY tentativa`,
    ),
    [
      { tentativa: 1, status: 'rejeitada', recusa_reversivel: null },
      { tentativa: 2, status: 'rejeitada', recusa_reversivel: null },
      { tentativa: 3, status: 'recusada', recusa_reversivel: false },
      { tentativa: 4, status: 'recusada', recusa_reversivel: true },
      { tentativa: 5, status: 'recusada', recusa_reversivel: false },
    ],
  );
  await t.rejects(
    query(url, `UPDATE checkout_recorrencia_cobrancas SET status = 'outra' WHERE tentativa = 1`),
    /checkout_recorrencia_cobrancas_status_valido/,
    'the wider check still refuses other statuses',
  );
});
