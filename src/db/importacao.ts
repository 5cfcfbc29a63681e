// Writes imported recurrences in bulk (one upsert per batch, arrays through unnest), keyed by the old
// system's id: new ids are inserted, changed ones updated, identical ones left alone. A recurrence the new
// service has already charged or changed is never overwritten by an import, nor is one it archived (or purged
// from the archive since) brought back (both are counted as protected).
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';
import type { ImportedRecurrence } from '../domain/legacy-import.ts';

export type BatchCounts = { inseridas: number; atualizadas: number; protegidas: number };

/** The columns an import sets, compared to tell a changed row from an identical one. */
const COMPARED = [
  'vendedor_id',
  'cliente_ref',
  'cartao_token',
  'bandeira',
  'valor_centavos',
  'moeda',
  'descricao',
  'periodicidade',
  'dia_ancora',
  'proxima_cobranca',
  'total_ciclos',
  'ciclos_cobrados',
  'status',
  'motivo_hold',
  'referencia_externa',
  'criado_em',
] as const;

function tuple(alias: string) {
  return sql.join(
    COMPARED.map((column) => sql.identifier([alias, column])),
    sql.fragment`, `,
  );
}

/** Owned by the new service: it has attempts here, or was changed through the API. */
const OWNED = sql.fragment`(EXISTS (SELECT 1 FROM checkout_recorrencia_cobrancas c WHERE c.recorrencia_id = e.id)
  OR EXISTS (SELECT 1 FROM checkout_recorrencias_alteracoes a WHERE a.recorrencia_id = e.id))`;

/**
 * Locks, for the rest of the import's transaction, the existing recurrences the import may overwrite (not
 * owned by this service: ownership never goes away, so owned ones are never written), all at once and in id
 * order, as the charge phases and the API lock (no deadlock with them). Their charges wait for the import to
 * commit. Without it the upsert's ownership check would read its statement's snapshot while ON CONFLICT DO
 * UPDATE waits for a row and then writes its latest version: a charge committed meanwhile would be
 * overwritten. After it, each upsert starts after whatever held those rows committed, and sees it.
 */
export async function lockOverwritableRecurrences(
  tx: CommonQueryMethods,
  ids: readonly string[],
): Promise<void> {
  await tx.query(sql.unsafe`
    SELECT e.id FROM checkout_recorrencias e
    WHERE e.id_legado = ANY(${sql.array([...ids], 'text')}) AND NOT ${OWNED}
    ORDER BY e.id FOR UPDATE OF e`);
}

/**
 * Upserts one batch (ids must be distinct within it). Must run inside the import's transaction, after
 * lockOverwritableRecurrences.
 */
export async function upsertImportedBatch(
  tx: CommonQueryMethods,
  rows: readonly ImportedRecurrence[],
): Promise<BatchCounts> {
  const column = <K extends keyof ImportedRecurrence>(key: K) => rows.map((row) => row[key]);
  return tx.one(sql.type(
    z.object({ inseridas: z.number(), atualizadas: z.number(), protegidas: z.number() }),
  )`
    WITH dados AS (
      SELECT * FROM unnest(
        ${sql.array(column('id_legado'), 'text')}::text[], ${sql.array(column('vendedor_id'), 'text')}::text[],
        ${sql.array(column('cliente_ref'), 'text')}::text[], ${sql.array(column('cartao_token'), 'text')}::text[],
        ${sql.array(column('bandeira'), 'text')}::text[], ${sql.array(column('valor_centavos'), 'int8')}::bigint[],
        ${sql.array(column('moeda'), 'text')}::text[], ${sql.array(column('descricao'), 'text')}::text[],
        ${sql.array(column('periodicidade'), 'text')}::text[], ${sql.array(column('dia_ancora'), 'int2')}::smallint[],
        ${sql.array(column('proxima_cobranca'), 'date')}::date[], ${sql.array(column('total_ciclos'), 'int4')}::int[],
        ${sql.array(column('ciclos_cobrados'), 'int4')}::int[], ${sql.array(column('status'), 'text')}::text[],
        ${sql.array(column('motivo_hold'), 'text')}::text[], ${sql.array(column('referencia_externa'), 'text')}::text[],
        ${sql.array(column('criado_em'), 'timestamptz')}::timestamptz[]
      ) AS t(id_legado, vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos, moeda, descricao,
             periodicidade, dia_ancora, proxima_cobranca, total_ciclos, ciclos_cobrados, status, motivo_hold,
             referencia_externa, criado_em)
    ), novos AS (
      -- Values an import does not carry come from the existing row, so a rerun compares equal.
      SELECT d.id_legado, d.vendedor_id, d.cliente_ref, d.cartao_token, d.bandeira, d.valor_centavos, d.moeda,
        d.descricao, d.periodicidade, d.dia_ancora, d.proxima_cobranca, d.total_ciclos, d.ciclos_cobrados, d.status,
        d.motivo_hold, d.referencia_externa, coalesce(d.criado_em, e.criado_em, now()) AS criado_em,
        CASE WHEN d.status = 'hold' THEN coalesce(e.hold_em, now()) END AS hold_em,
        CASE WHEN d.status IN ('cancelado', 'concluido') THEN coalesce(e.encerrada_em, now()) END AS encerrada_em
      FROM dados d LEFT JOIN checkout_recorrencias e ON e.id_legado = d.id_legado
    ), marcadas AS (
      -- Also protected: an old id whose recurrence ended here and was archived, or purged from the archive since
      -- (an import must not revive it).
      SELECT n.*, (e.id IS NOT NULL AND (${tuple('e')}) IS DISTINCT FROM (${tuple('n')}) AND ${OWNED})
          OR (e.id IS NULL AND (
            EXISTS (SELECT 1 FROM checkout_recorrencias_arquivo a WHERE a.id_legado = n.id_legado)
            OR EXISTS (SELECT 1 FROM id_legado_expurgados x WHERE x.id_legado = n.id_legado)))
          AS protegida,
        -- Never written, even when identical to the export as this statement's snapshot reads it (counted as
        -- unchanged): lockOverwritableRecurrences did not lock it, so a charge or a change can commit before ON
        -- CONFLICT reaches the row, and DO UPDATE would then overwrite that latest version.
        coalesce(e.id IS NOT NULL AND ${OWNED}, false) AS propria
      FROM novos n LEFT JOIN checkout_recorrencias e ON e.id_legado = n.id_legado
    ), gravadas AS (
      INSERT INTO checkout_recorrencias AS r (id_legado, vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos,
        moeda, descricao, periodicidade, dia_ancora, proxima_cobranca, total_ciclos, ciclos_cobrados, status, motivo_hold,
        referencia_externa, criado_em, hold_em, encerrada_em)
      SELECT id_legado, vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos, moeda, descricao, periodicidade,
        dia_ancora, proxima_cobranca, total_ciclos, ciclos_cobrados, status, motivo_hold, referencia_externa, criado_em,
        hold_em, encerrada_em
      FROM marcadas WHERE NOT protegida AND NOT propria
      ON CONFLICT ON CONSTRAINT checkout_recorrencias_id_legado_unico DO UPDATE SET
        vendedor_id = excluded.vendedor_id, cliente_ref = excluded.cliente_ref, cartao_token = excluded.cartao_token,
        bandeira = excluded.bandeira, valor_centavos = excluded.valor_centavos, moeda = excluded.moeda,
        descricao = excluded.descricao, periodicidade = excluded.periodicidade, dia_ancora = excluded.dia_ancora,
        proxima_cobranca = excluded.proxima_cobranca, total_ciclos = excluded.total_ciclos,
        ciclos_cobrados = excluded.ciclos_cobrados, status = excluded.status, motivo_hold = excluded.motivo_hold,
        referencia_externa = excluded.referencia_externa, criado_em = excluded.criado_em, hold_em = excluded.hold_em,
        encerrada_em = excluded.encerrada_em, proxima_tentativa = NULL, falhas_consecutivas = 0,
        atualizado_em = now()
      WHERE (${tuple('r')}) IS DISTINCT FROM (${tuple('excluded')})
      RETURNING (r.xmax = 0) AS inserida
    )
    SELECT (SELECT count(*) FROM gravadas WHERE inserida)::int AS inseridas,
      (SELECT count(*) FROM gravadas WHERE NOT inserida)::int AS atualizadas,
      (SELECT count(*) FROM marcadas WHERE protegida)::int AS protegidas`);
}

/** Records a (committed) import run; its cutover then bounds the schedule changes of imported rows. */
export async function insertImportRun(
  tx: CommonQueryMethods,
  run: { file: string; who: string; cutover: IsoDate | null; counts: Record<string, number> },
): Promise<void> {
  await tx.query(sql.unsafe`
    INSERT INTO importacoes_legado (arquivo, quem, corte, contagens)
    VALUES (${run.file}, ${run.who}, ${run.cutover}::date, ${sql.jsonb(run.counts)})`);
}

/** Serialises imports: a second one waits for the first to commit or roll back. */
export async function lockImports(tx: CommonQueryMethods): Promise<void> {
  await tx.query(sql.unsafe`SELECT pg_advisory_xact_lock(hashtext('recorrencias:importacao_legado'))`);
}
