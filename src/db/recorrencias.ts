// Queries on checkout_recorrencias (the recurrences). Functions take the connection first so the caller
// owns the transaction; the ones that change a recurrence's charging state must run in the charge
// transaction that also records the attempt's outcome.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { PERIODICITIES } from '../domain/calendar.ts';
import type { IsoDate } from '../domain/dates.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const IdRow = z.object({ id: z.number() });
const CountRow = z.object({ n: z.number() });

export const RECURRENCE_STATUSES = ['ativo', 'hold', 'pausado', 'cancelado', 'concluido'] as const;

export const Recurrence = z.object({
  id: z.number(),
  vendedor_id: z.string(),
  cliente_ref: z.string().nullable(),
  cartao_token: z.string(),
  bandeira: z.string(),
  valor_centavos: z.number(),
  moeda: z.string(),
  descricao: z.string(),
  periodicidade: z.enum(PERIODICITIES),
  dia_ancora: z.number().nullable(),
  proxima_cobranca: z.string(),
  total_ciclos: z.number().nullable(),
  ciclos_cobrados: z.number(),
  status: z.enum(RECURRENCE_STATUSES),
  falhas_consecutivas: z.number(),
  total_falhas: z.number(),
  proxima_tentativa: z.string().nullable(),
  motivo_hold: z.string().nullable(),
  hold_em: z.date().nullable(),
  encerrada_em: z.date().nullable(),
  referencia_externa: z.string().nullable(),
  id_legado: z.string().nullable(),
  /** The business date of the last `retomar`: no new cycle before it is charged. */
  cobrar_a_partir_de: z.string().nullable(),
  /** The business date of the `pausar` of that pause: its cycles are from here up to `cobrar_a_partir_de`. */
  pausada_desde: z.string().nullable(),
  /** Earlier pauses still ahead of the next charge, [pausada_desde, cobrar_a_partir_de] (see migration 0021). */
  pausas_anteriores: z.array(z.tuple([z.string().nullable(), z.string()])),
  hold_avisado_em: z.date().nullable(),
  criado_em: z.date(),
  atualizado_em: z.date(),
});
export type Recurrence = z.infer<typeof Recurrence>;

/** Every recurrence column, for queries that read whole recurrences (and the archive, which copies them). */
export const RECURRENCE_COLUMNS = sql.fragment`id, vendedor_id, cliente_ref, cartao_token, bandeira, valor_centavos, moeda, descricao,
  periodicidade, dia_ancora, proxima_cobranca, total_ciclos, ciclos_cobrados, status, falhas_consecutivas,
  total_falhas, proxima_tentativa, motivo_hold, hold_em, encerrada_em, referencia_externa, id_legado,
  cobrar_a_partir_de, pausada_desde, pausas_anteriores, hold_avisado_em, criado_em, atualizado_em`;

/** Locks the row for the rest of the transaction (the charge phases serialise on it). */
export async function lockRecurrence(tx: CommonQueryMethods, id: number): Promise<Recurrence | null> {
  return tx.maybeOne(
    sql.type(Recurrence)`SELECT ${RECURRENCE_COLUMNS} FROM checkout_recorrencias WHERE id = ${id} FOR UPDATE`,
  );
}

/** Locks several recurrences, in id order (the order every charge phase locks in), for a batch. */
export async function lockRecurrences(
  tx: CommonQueryMethods,
  ids: readonly number[],
): Promise<Map<number, Recurrence>> {
  if (ids.length === 0) return new Map();
  const result = await tx.query(sql.type(Recurrence)`
    SELECT ${RECURRENCE_COLUMNS} FROM checkout_recorrencias
    WHERE id = ANY(${sql.array([...ids], 'int8')}) ORDER BY id FOR UPDATE`);
  return new Map(result.rows.map((row) => [row.id, row]));
}

export async function findRecurrence(db: CommonQueryMethods, id: number): Promise<Recurrence | null> {
  return db.maybeOne(
    sql.type(Recurrence)`SELECT ${RECURRENCE_COLUMNS} FROM checkout_recorrencias WHERE id = ${id}`,
  );
}

const ChargeableRow = z.object({ id: z.number(), data: z.string() });
export type ChargeableRow = z.infer<typeof ChargeableRow>;
export type ChargeableCursor = { date: IsoDate; id: number } | null;

/**
 * One page of active recurrences to charge on `date`, keyset-paginated in (date, id) order over a partial
 * index: `due` = next cycle on or before the date and not waiting for a retry (checkout_recorrencias_devidas_idx);
 * `retry` = retry date on or before the date (checkout_recorrencias_retentativas_idx). `data` is that date.
 */
export async function findChargeablePage(
  db: CommonQueryMethods,
  kind: 'due' | 'retry',
  date: IsoDate,
  after: ChargeableCursor,
  limit: number,
): Promise<readonly ChargeableRow[]> {
  const column =
    kind === 'due' ? sql.identifier(['proxima_cobranca']) : sql.identifier(['proxima_tentativa']);
  const waiting =
    kind === 'due' ? sql.fragment`proxima_tentativa IS NULL` : sql.fragment`proxima_tentativa IS NOT NULL`;
  const cursor =
    after === null
      ? sql.fragment`TRUE`
      : sql.fragment`(${column}, id) > (${after.date}::date, ${after.id}::bigint)`;
  const result = await db.query(sql.type(ChargeableRow)`
    SELECT id, ${column}::text AS data FROM checkout_recorrencias
    WHERE status = 'ativo' AND ${waiting} AND ${column} <= ${date}::date AND ${cursor}
    ORDER BY ${column}, id
    LIMIT ${limit}`);
  return result.rows;
}

/** Moves the unpaid cycle forward (dropping a planned retry); the caller records the cycles it skips. */
export async function moveNextCharge(tx: CommonQueryMethods, id: number, cycle: IsoDate): Promise<void> {
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencias
    SET proxima_cobranca = ${cycle}::date, proxima_tentativa = NULL, atualizado_em = now()
    WHERE id = ${id}`);
}

/** After a decline that ends the retries, or a rejected request: the recurrence waits for an operator. */
export async function markOnHold(
  tx: CommonQueryMethods,
  rows: ReadonlyArray<{ id: number; reason: string }>,
  countsAsDecline: boolean,
): Promise<void> {
  if (rows.length === 0) return;
  const increment = countsAsDecline ? 1 : 0;
  await tx.query(sql.unsafe`
    UPDATE checkout_recorrencias r
    SET status = 'hold', motivo_hold = i.reason, hold_em = now(), proxima_tentativa = NULL,
        falhas_consecutivas = falhas_consecutivas + ${increment}, total_falhas = total_falhas + ${increment},
        atualizado_em = now()
    FROM ${sql.unnest(
      rows.map((row) => [row.id, row.reason]),
      ['int8', 'text'],
    )} AS i(id, reason)
    WHERE r.id = i.id`);
}

/** Takes a recurrence off hold: active again, counters and retry date cleared. Returns false unless it was on hold. */
export async function reactivateFromHold(tx: CommonQueryMethods, id: number): Promise<boolean> {
  const result = await tx.query(sql.type(IdRow)`
    UPDATE checkout_recorrencias
    SET status = 'ativo', motivo_hold = NULL, hold_em = NULL, falhas_consecutivas = 0, proxima_tentativa = NULL,
        atualizado_em = now()
    WHERE id = ${id} AND status = 'hold'
    RETURNING id`);
  return result.rowCount === 1;
}

/** How many recurrences `findChargeablePage` would return in all, for dry runs and checks. */
export async function countChargeable(
  db: CommonQueryMethods,
  kind: 'due' | 'retry',
  date: IsoDate,
): Promise<number> {
  const column =
    kind === 'due' ? sql.identifier(['proxima_cobranca']) : sql.identifier(['proxima_tentativa']);
  const waiting =
    kind === 'due' ? sql.fragment`proxima_tentativa IS NULL` : sql.fragment`proxima_tentativa IS NOT NULL`;
  return db.oneFirst(sql.type(CountRow)`
    SELECT count(*)::int AS n FROM checkout_recorrencias WHERE status = 'ativo' AND ${waiting} AND ${column} <= ${date}::date`);
}
