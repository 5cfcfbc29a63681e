// Queries on avisos_vendedores, the outbox of seller notices about recurrences on hold. One row per seller
// per business date: the unique key makes a rerun of notificar_recorrencias_hold create nothing new.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const IdRow = z.object({ id: z.number() });

export const HeldRecurrence = z.object({
  id: z.number(),
  valor_centavos: z.number(),
  moeda: z.string(),
  motivo_hold: z.string().nullable(),
  hold_em: z.string().nullable(),
  cliente_ref: z.string().nullable(),
  descricao: z.string(),
});

const SellerHolds = z.object({
  vendedor_id: z.string(),
  total_em_hold: z.number(),
  /** The first `listLimit` of the new holds, oldest first. */
  novas: z.array(HeldRecurrence),
  /** How many holds are new, listed or not. */
  novas_total: z.number(),
  /** Text, to keep Postgres's microseconds: a Date would cut them, and the latest hold would look new again. */
  corte_em: z.string(),
});
export type SellerHolds = z.infer<typeof SellerHolds>;

/**
 * A hold's `hold_em` is its transaction's start, and that transaction may commit after a notice has read the
 * holds and moved the cut-off past it: holds this much before the previous cut-off that no earlier notice
 * listed count as new too. Far more than a charge transaction can last (its statements time out at 60 s).
 */
const LATE_COMMIT_MARGIN = sql.fragment`interval '10 minutes'`;

/**
 * Every seller with recurrences on hold: how many, and the ones put on hold since that seller's previous
 * notice (its cut-off, or just before it and not listed by that notice), oldest first, at most `listLimit`
 * of them.
 */
export async function findSellerHolds(
  db: CommonQueryMethods,
  date: IsoDate,
  listLimit: number,
): Promise<readonly SellerHolds[]> {
  const result = await db.query(sql.type(SellerHolds)`
    WITH anterior AS (
      -- Index lookups per seller with holds (the latest notice; the few within the margin, on
      -- avisos_vendedores_vendedor_corte_idx), not a pass over every seller's notice history.
      SELECT v.vendedor_id, ultimo.corte_em,
        -- Listed by any earlier notice whose cut-off is within the margin: a day without new holds keeps the
        -- cut-off and lists nothing, and the holds listed before it must not count as new the day after.
        ARRAY(SELECT (e->>'id')::bigint
              FROM avisos_vendedores p CROSS JOIN LATERAL jsonb_array_elements(p.conteudo->'novas') e
              WHERE p.vendedor_id = v.vendedor_id AND p.data_negocio < ${date}::date
                AND p.corte_em > ultimo.corte_em - ${LATE_COMMIT_MARGIN}) AS listadas
      FROM (SELECT DISTINCT vendedor_id FROM checkout_recorrencias WHERE status = 'hold') v
      CROSS JOIN LATERAL (
        SELECT a.corte_em
        FROM avisos_vendedores a
        WHERE a.vendedor_id = v.vendedor_id AND a.data_negocio < ${date}::date
        ORDER BY a.data_negocio DESC LIMIT 1
      ) ultimo
    ), holds AS (
      SELECT r.vendedor_id, r.id, r.valor_centavos, r.moeda, r.motivo_hold, r.hold_em, r.cliente_ref, r.descricao,
        (a.corte_em IS NULL OR r.hold_em > a.corte_em
          OR (r.hold_em > a.corte_em - ${LATE_COMMIT_MARGIN} AND r.id <> ALL(a.listadas))) AS nova,
        coalesce(a.corte_em, '-infinity'::timestamptz) AS corte_anterior
      FROM checkout_recorrencias r LEFT JOIN anterior a USING (vendedor_id)
      WHERE r.status = 'hold'
    )
    SELECT vendedor_id, count(*)::int AS total_em_hold,
      coalesce((array_agg(jsonb_build_object('id', id, 'valor_centavos', valor_centavos, 'moeda', moeda,
          'motivo_hold', motivo_hold, 'hold_em', hold_em, 'cliente_ref', cliente_ref, 'descricao', descricao)
        ORDER BY hold_em, id) FILTER (WHERE nova))[1:${listLimit}], '{}') AS novas,
      (count(*) FILTER (WHERE nova))::int AS novas_total,
      greatest(coalesce(max(hold_em), now()), max(corte_anterior))::text AS corte_em
    FROM holds GROUP BY vendedor_id ORDER BY vendedor_id`);
  return result.rows;
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
