// Queries behind the recurrence lifecycle API: create, list with a keyset cursor, change fields and status,
// the change history, and the facts a schedule change is checked against (the last approved cycle, the
// latest import cutover). The writes must run in a transaction holding the recurrence's row lock
// (lockRecurrence), the same lock the charge phases take.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { isoDate, type IsoDate } from '../domain/dates.ts';
import type { PauseDays, RecurrenceTerms } from '../domain/recurrence-rules.ts';
import { RECURRENCE_COLUMNS as COLUMNS, Recurrence } from './recorrencias.ts';

export type NewRecurrence = RecurrenceTerms;

export async function insertNewRecurrence(tx: CommonQueryMethods, row: NewRecurrence): Promise<Recurrence> {
  return tx.one(sql.type(Recurrence)`
    INSERT INTO checkout_recorrencias (vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos, moeda,
      descricao, periodicidade, dia_ancora, proxima_cobranca, total_ciclos, referencia_externa)
    VALUES (${row.vendedor_id}, ${row.cliente_ref}, ${row.cartao_token}, ${row.bandeira}, ${row.valor_centavos},
      ${row.moeda}, ${row.descricao}, ${row.periodicidade}, ${row.dia_ancora}, ${row.proxima_cobranca}::date,
      ${row.total_ciclos}, ${row.referencia_externa})
    RETURNING ${COLUMNS}`);
}

export type RecurrenceFilter = {
  vendedor_id?: string;
  status?: Recurrence['status'];
  /** proxima_cobranca on or before this date. */
  proxima_cobranca_ate?: IsoDate;
  referencia_externa?: string;
  id_legado?: string;
};

/** One page, newest first (id descending), after the cursor id. */
export async function listRecurrencesPage(
  db: CommonQueryMethods,
  filter: RecurrenceFilter,
  afterId: number | null,
  limit: number,
): Promise<readonly Recurrence[]> {
  const conditions = [
    afterId === null ? null : sql.fragment`id < ${afterId}`,
    filter.vendedor_id === undefined ? null : sql.fragment`vendedor_id = ${filter.vendedor_id}`,
    filter.status === undefined ? null : sql.fragment`status = ${filter.status}`,
    filter.proxima_cobranca_ate === undefined
      ? null
      : sql.fragment`proxima_cobranca <= ${filter.proxima_cobranca_ate}::date`,
    filter.referencia_externa === undefined
      ? null
      : sql.fragment`referencia_externa = ${filter.referencia_externa}`,
    filter.id_legado === undefined ? null : sql.fragment`id_legado = ${filter.id_legado}`,
  ].filter((condition) => condition !== null);
  const where = conditions.length === 0 ? sql.fragment`TRUE` : sql.join(conditions, sql.fragment` AND `);
  const result = await db.query(sql.type(Recurrence)`
    SELECT ${COLUMNS} FROM checkout_recorrencias WHERE ${where} ORDER BY id DESC LIMIT ${limit}`);
  return result.rows;
}

export type RecurrenceChanges = Partial<{
  valor_centavos: number;
  cartao_token: string;
  bandeira: string;
  dia_ancora: number | null;
  proxima_cobranca: IsoDate;
  descricao: string;
}>;

/** Applies the given fields (absent ones are kept). */
export async function updateRecurrenceFields(
  tx: CommonQueryMethods,
  id: number,
  changes: RecurrenceChanges,
): Promise<Recurrence> {
  const has = (field: keyof RecurrenceChanges) => changes[field] !== undefined;
  return tx.one(sql.type(Recurrence)`
    UPDATE checkout_recorrencias SET
      valor_centavos = CASE WHEN ${has('valor_centavos')} THEN ${changes.valor_centavos ?? null}::bigint ELSE valor_centavos END,
      cartao_token = CASE WHEN ${has('cartao_token')} THEN ${changes.cartao_token ?? null} ELSE cartao_token END,
      bandeira = CASE WHEN ${has('bandeira')} THEN ${changes.bandeira ?? null} ELSE bandeira END,
      dia_ancora = CASE WHEN ${has('dia_ancora')} THEN ${changes.dia_ancora ?? null}::smallint ELSE dia_ancora END,
      proxima_cobranca = CASE WHEN ${has('proxima_cobranca')} THEN ${changes.proxima_cobranca ?? null}::date
        ELSE proxima_cobranca END,
      descricao = CASE WHEN ${has('descricao')} THEN ${changes.descricao ?? null} ELSE descricao END,
      atualizado_em = now()
    WHERE id = ${id}
    RETURNING ${COLUMNS}`);
}

/**
 * Sets the status. Cancelling starts the archive clock and drops a planned retry. Pausing records its
 * business date when given (`change.pause.on`, the pause's first day) with the earlier pauses to keep
 * (`change.pause.earlier`: pausesStillAhead). Resuming records its business date (`resume.on`: no cycle before it is charged) and may move the
 * unpaid cycle forward (`resume.at`), dropping the retry and the declines of the cycle left behind.
 * `resetDeclines`: the decline count starts again (a card changed after the declines that ended its retries).
 */
export async function updateRecurrenceStatus(
  tx: CommonQueryMethods,
  id: number,
  status: 'ativo' | 'pausado' | 'cancelado',
  change: {
    resume?: { on: IsoDate; at: IsoDate | null } | null;
    pause?: { on: IsoDate; earlier: PauseDays[] };
    resetDeclines?: boolean;
  },
): Promise<Recurrence> {
  const { resume = null, pause = null, resetDeclines = false } = change;
  const resumeAt = resume?.at ?? null;
  return tx.one(sql.type(Recurrence)`
    UPDATE checkout_recorrencias SET
      status = ${status},
      pausada_desde = coalesce(${pause?.on ?? null}::date, pausada_desde),
      pausas_anteriores = coalesce(${pause === null ? null : sql.jsonb(pause.earlier as never)}, pausas_anteriores),
      encerrada_em = CASE WHEN ${status} = 'cancelado' THEN now() ELSE encerrada_em END,
      proxima_tentativa = CASE WHEN ${status} = 'cancelado' OR ${resumeAt !== null} THEN NULL ELSE proxima_tentativa END,
      falhas_consecutivas = CASE WHEN ${resumeAt !== null || resetDeclines} THEN 0 ELSE falhas_consecutivas END,
      proxima_cobranca = coalesce(${resumeAt}::date, proxima_cobranca),
      cobrar_a_partir_de = coalesce(${resume?.on ?? null}::date, cobrar_a_partir_de),
      atualizado_em = now()
    WHERE id = ${id}
    RETURNING ${COLUMNS}`);
}

export type FieldChange = { campo: string; valor_anterior: string | null; valor_novo: string | null };

export async function insertChangeHistory(
  tx: CommonQueryMethods,
  recurrenceId: number,
  who: string,
  changes: readonly FieldChange[],
): Promise<void> {
  if (changes.length === 0) return;
  await tx.query(sql.unsafe`
    INSERT INTO checkout_recorrencias_alteracoes (recorrencia_id, quem, campo, valor_anterior, valor_novo)
    SELECT ${recurrenceId}, ${who}, campo, anterior, novo
    FROM unnest(${sql.array(
      changes.map((c) => c.campo),
      'text',
    )}::text[], ${sql.array(
      changes.map((c) => c.valor_anterior),
      'text',
    )}::text[], ${sql.array(
      changes.map((c) => c.valor_novo),
      'text',
    )}::text[]) AS t(campo, anterior, novo)`);
}

const HistoryRow = z.object({
  campo: z.string(),
  valor_anterior: z.string().nullable(),
  valor_novo: z.string().nullable(),
  quem: z.string(),
  em: z.date(),
});

export async function listChangeHistory(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<readonly z.infer<typeof HistoryRow>[]> {
  const result = await db.query(sql.type(HistoryRow)`
    SELECT campo, valor_anterior, valor_novo, quem, em FROM checkout_recorrencias_alteracoes
    WHERE recorrencia_id = ${recurrenceId} ORDER BY id`);
  return result.rows;
}

/**
 * Whether, after `since`, one of `fields` was changed through the API, or the recurrence was taken off hold (an
 * operator's `reativar`, forced or not). Nothing else counts: pausing and resuming (and the move of the next
 * charge a resume writes) change nothing a decline code is about.
 */
export async function changedSince(
  db: CommonQueryMethods,
  recurrenceId: number,
  since: Date,
  fields: readonly (keyof RecurrenceChanges)[],
): Promise<boolean> {
  return db.oneFirst(sql.type(z.object({ changed: z.boolean() }))`
    SELECT EXISTS (SELECT 1 FROM checkout_recorrencias_alteracoes
      WHERE recorrencia_id = ${recurrenceId} AND em > ${sql.timestamp(since)}
        AND (campo = ANY(${sql.array([...fields], 'text')}) OR (campo = 'status' AND valor_anterior = 'hold'))
    ) AS changed`);
}

/** Whether the recurrence's latest status change was a `retomar` that landed on hold (pausado -> hold). */
export async function resumedOntoHold(db: CommonQueryMethods, recurrenceId: number): Promise<boolean> {
  return db.oneFirst(sql.type(z.object({ onto_hold: z.boolean() }))`
    SELECT coalesce((SELECT valor_anterior = 'pausado' AND valor_novo = 'hold'
      FROM checkout_recorrencias_alteracoes
      WHERE recorrencia_id = ${recurrenceId} AND campo = 'status' ORDER BY id DESC LIMIT 1), false) AS onto_hold`);
}

const LastApproval = z.object({ ciclo: z.string(), ancoras_anteriores: z.array(z.string().nullable()) });

/**
 * The last cycle approved here and the anchors the recurrence had before each anchor change made since that
 * attempt began (a schedule change is refused while an attempt is pending, so the first of them is the anchor
 * the cycle was charged under). Null when nothing was approved here.
 */
export async function findLastApproval(
  db: CommonQueryMethods,
  recurrenceId: number,
): Promise<{ cycle: IsoDate; earlierAnchors: Array<number | null> } | null> {
  const row = await db.maybeOne(sql.type(LastApproval)`
    SELECT a.ciclo::text AS ciclo,
      coalesce((SELECT array_agg(h.valor_anterior ORDER BY h.id) FROM checkout_recorrencias_alteracoes h
        WHERE h.recorrencia_id = a.recorrencia_id AND h.campo = 'dia_ancora' AND h.em >= a.criado_em), '{}')
        AS ancoras_anteriores
    FROM checkout_recorrencia_cobrancas a
    WHERE a.recorrencia_id = ${recurrenceId} AND a.status = 'aprovada'
    ORDER BY a.ciclo DESC LIMIT 1`);
  if (row === null) return null;
  return {
    cycle: isoDate.parse(row.ciclo),
    earlierAnchors: row.ancoras_anteriores.map((anchor) => (anchor === null ? null : Number(anchor))),
  };
}

/**
 * The cutover in force: that of the latest import given one, or null when nothing was imported with one. Imports
 * only move it later, except one that replaces a mistyped cutover (`--replace-cutover`).
 */
export async function findLatestLegacyCutover(db: CommonQueryMethods): Promise<IsoDate | null> {
  return db.oneFirst(sql.type(z.object({ corte: z.string().nullable() }))`
    SELECT (SELECT corte::text FROM importacoes_legado WHERE corte IS NOT NULL ORDER BY id DESC LIMIT 1) AS corte`);
}
