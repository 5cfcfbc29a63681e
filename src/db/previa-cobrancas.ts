// What processar_recorrencias_do_dia would charge on a date, read-only: the recurrences its fan-out selects
// (the same condition as findChargeablePage 'due'), each with the attempt a charge would resume instead of
// planning a new one. A recurrence whose pending attempt is blocked (409 idempotency_key_reused, waiting for
// an operator's resolver call), or would be blocked when resumed (sent before and older than the gateway keeps
// its keys, as of now), is left out: its job would charge nothing and dead-letter. It is counted apart.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { PERIODICITIES } from '../domain/calendar.ts';
import type { IsoDate } from '../domain/dates.ts';
import { keyMayBeForgotten } from './cobrancas.ts';

const DUE = sql.fragment`r.status = 'ativo' AND r.proxima_tentativa IS NULL`;
/** No pending attempt, or one a charge would send: not blocked, and not to be blocked (blockIfKeyExpired). */
function notBlocked(keyRetentionHours: number) {
  if (keyRetentionHours === 0) return sql.fragment`c.codigo_recusa IS NULL`;
  return sql.fragment`(c.codigo_recusa IS NULL AND NOT coalesce(${keyMayBeForgotten(keyRetentionHours)}, false))`;
}

export const DueRow = z.object({
  id: z.number(),
  id_legado: z.string().nullable(),
  vendedor_id: z.string(),
  periodicidade: z.enum(PERIODICITIES),
  dia_ancora: z.number().nullable(),
  proxima_cobranca: z.string(),
  cobrar_a_partir_de: z.string().nullable(),
  pausada_desde: z.string().nullable(),
  pausas_anteriores: z.array(z.tuple([z.string().nullable(), z.string()])),
  /** Whether the next cycle was attempted already (declined: a cycle owed from before a pause). */
  ciclo_tentado: z.boolean(),
  valor_centavos: z.number(),
  moeda: z.string(),
  pendente_ciclo: z.string().nullable(),
  pendente_valor_centavos: z.number().nullable(),
});
export type DueRow = z.infer<typeof DueRow>;

/** One page in (proxima_cobranca, id) order after the cursor. */
export async function findDuePreviewPage(
  db: CommonQueryMethods,
  date: IsoDate,
  after: { date: IsoDate; id: number } | null,
  limit: number,
  keyRetentionHours: number,
): Promise<readonly DueRow[]> {
  const cursor =
    after === null
      ? sql.fragment`TRUE`
      : sql.fragment`(r.proxima_cobranca, r.id) > (${after.date}::date, ${after.id}::bigint)`;
  const result = await db.query(sql.type(DueRow)`
    SELECT r.id, r.id_legado, r.vendedor_id, r.periodicidade, r.dia_ancora, r.proxima_cobranca::text AS proxima_cobranca,
      r.cobrar_a_partir_de::text AS cobrar_a_partir_de, r.pausada_desde::text AS pausada_desde,
      r.pausas_anteriores,
      EXISTS (SELECT 1 FROM checkout_recorrencia_cobrancas a
        WHERE a.recorrencia_id = r.id AND a.ciclo = r.proxima_cobranca) AS ciclo_tentado,
      r.valor_centavos, r.moeda, c.ciclo::text AS pendente_ciclo, c.valor_centavos AS pendente_valor_centavos
    FROM checkout_recorrencias r
    LEFT JOIN checkout_recorrencia_cobrancas c ON c.recorrencia_id = r.id AND c.status = 'pendente'
    WHERE ${DUE} AND ${notBlocked(keyRetentionHours)} AND r.proxima_cobranca <= ${date}::date AND ${cursor}
    ORDER BY r.proxima_cobranca, r.id
    LIMIT ${limit}`);
  return result.rows;
}

/**
 * How many would be charged and the sum of their amounts (a resumed attempt counts with its own amount), and
 * how many due recurrences are left out because their attempt is blocked.
 */
export async function sumDuePreview(
  db: CommonQueryMethods,
  date: IsoDate,
  keyRetentionHours: number,
): Promise<{ total: number; valor_total_centavos: number; bloqueadas: number }> {
  const sendable = notBlocked(keyRetentionHours);
  return db.one(sql.type(
    z.object({ total: z.number(), valor_total_centavos: z.number(), bloqueadas: z.number() }),
  )`
    SELECT count(*) FILTER (WHERE ${sendable})::int AS total,
      coalesce(sum(coalesce(c.valor_centavos, r.valor_centavos)) FILTER (WHERE ${sendable}), 0)::bigint AS valor_total_centavos,
      count(*) FILTER (WHERE NOT ${sendable})::int AS bloqueadas
    FROM checkout_recorrencias r
    LEFT JOIN checkout_recorrencia_cobrancas c ON c.recorrencia_id = r.id AND c.status = 'pendente'
    WHERE ${DUE} AND r.proxima_cobranca <= ${date}::date`);
}
