// Queries on avisos_vendedores, the outbox of seller notices about recurrences on hold, and on which holds a
// notice announced. One row per seller per business date: the unique key makes a rerun of
// notificar_recorrencias_hold create nothing new.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const IdRow = z.object({ id: z.number() });
const NoRows = z.object({});

export const HeldRecurrence = z.object({
  id: z.number(),
  valor_centavos: z.number(),
  moeda: z.string(),
  motivo_hold: z.string().nullable(),
  hold_em: z.string(),
  cliente_ref: z.string().nullable(),
  descricao: z.string(),
});

const SellerHolds = z.object({
  vendedor_id: z.string(),
  total_em_hold: z.number(),
  /** The first `listLimit` of the new holds, oldest first. */
  novas: z.array(HeldRecurrence),
  /**
   * Every new hold, listed or not, as read: the notice marks them all announced. `hold_em` is text, to keep
   * Postgres's microseconds (a Date would cut them): the mark matches it exactly.
   */
  novas_lidas: z.array(z.object({ id: z.number(), hold_em: z.string() })),
  /** How many holds are new, listed or not. */
  novas_total: z.number(),
  /** When the holds were read. */
  corte_em: z.string(),
});
export type SellerHolds = z.infer<typeof SellerHolds>;

/**
 * Every seller with recurrences on hold: how many, and the ones no notice announced yet (hold_avisado_em is not
 * this hold's hold_em: null, or an earlier hold's of the same recurrence), oldest first, at most `listLimit`
 * of them listed.
 */
export async function findSellerHolds(
  db: CommonQueryMethods,
  listLimit: number,
  sellerId?: string,
): Promise<readonly SellerHolds[]> {
  const seller = sellerId === undefined ? sql.fragment`TRUE` : sql.fragment`r.vendedor_id = ${sellerId}`;
  const result = await db.query(sql.type(SellerHolds)`
    WITH holds AS (
      SELECT r.vendedor_id, r.id, r.valor_centavos, r.moeda, r.motivo_hold, r.hold_em, r.cliente_ref, r.descricao,
        r.hold_avisado_em IS DISTINCT FROM r.hold_em AS nova
      FROM checkout_recorrencias r
      WHERE r.status = 'hold' AND ${seller}
    )
    SELECT vendedor_id, count(*)::int AS total_em_hold,
      coalesce((array_agg(jsonb_build_object('id', id, 'valor_centavos', valor_centavos, 'moeda', moeda,
          'motivo_hold', motivo_hold, 'hold_em', hold_em, 'cliente_ref', cliente_ref, 'descricao', descricao)
        ORDER BY hold_em, id) FILTER (WHERE nova))[1:${listLimit}], '{}') AS novas,
      coalesce(jsonb_agg(jsonb_build_object('id', id, 'hold_em', hold_em::text) ORDER BY id) FILTER (WHERE nova),
        '[]') AS novas_lidas,
      (count(*) FILTER (WHERE nova))::int AS novas_total,
      now()::text AS corte_em
    FROM holds GROUP BY vendedor_id ORDER BY vendedor_id`);
  return result.rows;
}

/**
 * Serialises the notices of one seller until the transaction ends: runs of two business dates at once (a
 * failed date retried beside today's) would otherwise both read the same holds as new and announce them twice.
 */
export async function lockSellerNotices(tx: CommonQueryMethods, sellerId: string): Promise<void> {
  await tx.query(
    sql.type(
      NoRows,
    )`SELECT FROM pg_advisory_xact_lock(hashtext('recorrencias:avisos'), hashtext(${sellerId}))`,
  );
}

/**
 * Marks the holds a notice announced: each recurrence still on the hold it was read with (the same hold_em).
 * One put on hold again since the read (reactivated meanwhile, whenever its transaction began) has another
 * hold_em, and that hold stays new. Every hold has a hold_em (the table's checkout_recorrencias_hold_tem_data).
 */
export async function markHoldsAnnounced(
  tx: CommonQueryMethods,
  holds: ReadonlyArray<{ id: number; hold_em: string }>,
): Promise<void> {
  if (holds.length === 0) return;
  // Locked in id order first, as every other statement that locks several recurrences does: no deadlock.
  await tx.query(sql.type(NoRows)`
    UPDATE checkout_recorrencias r
    SET hold_avisado_em = r.hold_em
    FROM (SELECT id FROM checkout_recorrencias WHERE id = ANY(${sql.array(
      holds.map((hold) => hold.id),
      'int8',
    )}) ORDER BY id FOR UPDATE) l,
      ${sql.unnest(
        holds.map((hold) => [hold.id, hold.hold_em]),
        ['int8', 'timestamptz'],
      )} AS lida(id, hold_em)
    WHERE r.id = l.id AND lida.id = r.id AND r.status = 'hold' AND r.hold_em = lida.hold_em`);
}

/** Inserts the day's notice for a seller; returns its id, or null when that seller already has one. */
export async function insertNotice(
  tx: CommonQueryMethods,
  notice: {
    sellerId: string;
    date: IsoDate;
    cutoff: string;
    newCount: number;
    totalCount: number;
    content: object;
    status: 'pendente' | 'registrado';
  },
): Promise<number | null> {
  return tx.maybeOneFirst(sql.type(IdRow)`
    INSERT INTO avisos_vendedores (vendedor_id, data_negocio, corte_em, novas_em_hold, total_em_hold, conteudo, status)
    VALUES (${notice.sellerId}, ${notice.date}::date, ${notice.cutoff}::timestamptz, ${notice.newCount},
      ${notice.totalCount}, ${sql.jsonb(notice.content as never)}, ${notice.status})
    ON CONFLICT ON CONSTRAINT avisos_vendedores_um_por_dia DO NOTHING
    RETURNING id`);
}
