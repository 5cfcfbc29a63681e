// The recurrence counts operators look at first (the seed's psql queries, for the São Paulo business date):
// by status, due on the date, on hold, waiting for a retry, and the day's attempts with amounts.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';
import { ATTEMPT_STATUSES } from './cobrancas.ts';
import { RECURRENCE_STATUSES } from './recorrencias.ts';

// Row schemas are built once: zod compiles a schema on first use, so an inline one would cost that on every call.
const StatsRow = z.object({ stats: z.unknown() });

const AttemptTotals = z.object({ quantidade: z.number(), valor_centavos: z.number() });

export const RecurrenceStats = z.object({
  data_negocio: z.string(),
  por_status: z.record(z.enum(RECURRENCE_STATUSES), z.number()),
  devidas_na_data: z.number(),
  em_hold: z.number(),
  aguardando_retentativa: z.number(),
  tentativas_na_data: z.object({
    aprovada: AttemptTotals,
    recusada: AttemptTotals,
    rejeitada: AttemptTotals,
    pendente: AttemptTotals,
  }),
  tentativas_pendentes_total: z.number(),
});
export type RecurrenceStats = z.infer<typeof RecurrenceStats>;

export async function recurrenceStats(db: CommonQueryMethods, date: IsoDate): Promise<RecurrenceStats> {
  const row = await db.one(sql.type(StatsRow)`
    WITH por_status AS (
      SELECT status, count(*)::int AS n FROM checkout_recorrencias GROUP BY status
    ), tentativas AS (
      SELECT status, count(*)::int AS quantidade, coalesce(sum(valor_centavos), 0)::bigint AS valor_centavos
      FROM checkout_recorrencia_cobrancas WHERE data_negocio = ${date}::date GROUP BY status
    )
    SELECT jsonb_build_object(
      'data_negocio', ${date}::text,
      'por_status', (SELECT jsonb_object_agg(s, coalesce((SELECT n FROM por_status p WHERE p.status = s), 0))
                     FROM unnest(${sql.array([...RECURRENCE_STATUSES], 'text')}) AS s),
      'devidas_na_data', (SELECT count(*)::int FROM checkout_recorrencias
                          WHERE status = 'ativo' AND proxima_tentativa IS NULL AND proxima_cobranca <= ${date}::date),
      'em_hold', coalesce((SELECT n FROM por_status WHERE status = 'hold'), 0),
      'aguardando_retentativa', (SELECT count(*)::int FROM checkout_recorrencias
                                 WHERE status = 'ativo' AND proxima_tentativa IS NOT NULL),
      'tentativas_na_data', (SELECT jsonb_object_agg(s, jsonb_build_object(
                               'quantidade', coalesce((SELECT quantidade FROM tentativas t WHERE t.status = s), 0),
                               'valor_centavos', coalesce((SELECT valor_centavos FROM tentativas t WHERE t.status = s), 0)))
                             FROM unnest(${sql.array([...ATTEMPT_STATUSES], 'text')}) AS s),
      'tentativas_pendentes_total', (SELECT count(*)::int FROM checkout_recorrencia_cobrancas WHERE status = 'pendente')
    ) AS stats`);
  return RecurrenceStats.parse(row.stats);
}
