// The figures /metrics needs that no other query module answers: the age of the oldest unresolved attempt,
// the state of each periodic task's runs, and the seller notice outbox. One statement, read at scrape time.
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { IsoDate } from '../domain/dates.ts';
import { RUN_LOCK_HELD } from './task-runs.ts';

/** The seller notices counted at each scrape: the undelivered ones, read through their partial index. */
export const NOTICE_STATUSES = ['pendente', 'falhou'] as const;

const TaskRunGauges = z.object({
  tarefa: z.string(),
  /** Unix seconds of the end of its last successful run, null when it never succeeded. */
  ultimo_sucesso: z.number().nullable(),
  sucesso_na_data: z.boolean(),
  executando: z.boolean(),
});

export const MetricGauges = z.object({
  /** Unix seconds of the first recorded task run (the service's first day here), null before any. */
  primeira_execucao: z.number().nullable(),
  tentativa_pendente_mais_antiga_segundos: z.number().nullable(),
  tentativas_bloqueadas: z.number(),
  tarefas: z.array(TaskRunGauges),
  avisos_por_status: z.record(z.enum(NOTICE_STATUSES), z.number()),
  aviso_nao_entregue_mais_antigo_segundos: z.number().nullable(),
  eventos_nao_entregues: z.number(),
  evento_nao_entregue_mais_antigo_segundos: z.number().nullable(),
  /** `registrado` notices of the latest date notificar_recorrencias_hold succeeded for: recorded, never sent. */
  avisos_registrados_ultima_data: z.number(),
});
export type MetricGauges = z.infer<typeof MetricGauges>;

/**
 * Reads, for `tasks` and the business date `date`: each task's last success, whether it succeeded for the
 * date and whether a run is executing now; the notices by status (all kept ones); the ages (seconds, database
 * clock) of the oldest pending attempt and of the oldest notice not delivered (pendente or falhou), null
 * when there is none. Read-only.
 *
 * A run counts as executing only while its (task, date) advisory lock is held (RUN_LOCK_HELD): a row a crashed
 * process left 'executando' is not a running task.
 */
export async function getMetricGauges(
  db: CommonQueryMethods,
  filter: { date: IsoDate; tasks: readonly string[] },
): Promise<MetricGauges> {
  const row = await db.one(sql.type(z.object({ gauges: z.unknown() }))`
    WITH tarefas AS (
      SELECT t.tarefa,
        (SELECT extract(epoch FROM max(e.finalizada_em))::float8 FROM execucoes_tarefas e
         WHERE e.tarefa = t.tarefa AND e.status = 'sucesso') AS ultimo_sucesso,
        EXISTS (SELECT 1 FROM execucoes_tarefas e
                WHERE e.tarefa = t.tarefa AND e.data_negocio = ${filter.date}::date AND e.status = 'sucesso')
          AS sucesso_na_data,
        EXISTS (SELECT 1 FROM execucoes_tarefas e
                WHERE e.tarefa = t.tarefa AND e.status = 'executando' AND ${RUN_LOCK_HELD}) AS executando
      FROM unnest(${sql.array([...filter.tasks], 'text')}) AS t (tarefa)
    ), avisos AS (
      -- Only the undelivered ones (partial index): delivered and recorded ones are kept for months, not news.
      SELECT status, count(*)::int AS n FROM avisos_vendedores WHERE status IN ('pendente', 'falhou') GROUP BY status
    )
    SELECT jsonb_build_object(
      'primeira_execucao', (SELECT extract(epoch FROM min(iniciada_em))::float8 FROM execucoes_tarefas),
      -- Blocked attempts (a 409: codigo_recusa set) wait for an operator, maybe for days: counted apart, so
      -- that one does not hide a gateway incident behind an age already past the alert's threshold.
      'tentativa_pendente_mais_antiga_segundos',
        (SELECT extract(epoch FROM now() - min(criado_em))::float8
         FROM checkout_recorrencia_cobrancas WHERE status = 'pendente' AND codigo_recusa IS NULL),
      'tentativas_bloqueadas',
        (SELECT count(*)::int FROM checkout_recorrencia_cobrancas WHERE status = 'pendente' AND codigo_recusa IS NOT NULL),
      'tarefas', (SELECT coalesce(jsonb_agg(to_jsonb(tarefas) ORDER BY tarefa), '[]'::jsonb) FROM tarefas),
      'avisos_por_status',
        (SELECT jsonb_object_agg(s, coalesce((SELECT n FROM avisos a WHERE a.status = s), 0))
         FROM unnest(${sql.array([...NOTICE_STATUSES], 'text')}) AS s),
      'aviso_nao_entregue_mais_antigo_segundos',
        (SELECT extract(epoch FROM now() - min(criado_em))::float8
         FROM avisos_vendedores WHERE status IN ('pendente', 'falhou')),
      -- Checkout events: only the undelivered ones (partial index); delivered ones are millions and not news.
      'eventos_nao_entregues',
        (SELECT count(*)::int FROM eventos_checkout WHERE status IN ('pendente', 'falhou')),
      'evento_nao_entregue_mais_antigo_segundos',
        (SELECT extract(epoch FROM now() - min(criado_em))::float8
         FROM eventos_checkout WHERE status IN ('pendente', 'falhou')),
      -- The worker that ran the notice task decides: without NOTICE_WEBHOOK_URL its notices are only recorded,
      -- and their holds count as announced. A re-send (reenviar) takes a notice out of this count, and so does
      -- an operator giving it up (the runbook's registrado with ultimo_erro 'abandonado: ...').
      'avisos_registrados_ultima_data',
        (SELECT count(*)::int FROM avisos_vendedores
         WHERE status = 'registrado' AND ultimo_erro IS NULL AND data_negocio = (
           SELECT max(data_negocio) FROM execucoes_tarefas
           WHERE tarefa = 'notificar_recorrencias_hold' AND status = 'sucesso'))
    ) AS gauges`);
  return MetricGauges.parse(row.gauges);
}
