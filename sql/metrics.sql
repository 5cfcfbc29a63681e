-- Operator metrics with psql: psql "$DATABASE_URL" -f sql/metrics.sql
-- Read-only. Not a migration: the migrator applies only numbered files (0001_name.sql) and ignores this one.
-- "Today" is the business date in São Paulo (BUSINESS_TIME_ZONE), never the UTC date. Plain SQL only (no psql
-- meta-commands), so each statement also runs through any other client.

-- Recurrences by status.
SELECT status, count(*) AS recorrencias
FROM checkout_recorrencias
GROUP BY status
ORDER BY status;

-- Due today: active recurrences due on or before today's business date, not waiting for a retry (what
-- processar_recorrencias_do_dia enqueues; after a good morning only those with an unresolved attempt remain).
SELECT count(*) AS devidas_hoje
FROM checkout_recorrencias
WHERE status = 'ativo' AND proxima_tentativa IS NULL
  AND proxima_cobranca <= (now() AT TIME ZONE 'America/Sao_Paulo')::date;

-- Waiting for the retry of a declined charge (retentar_cobrancas_falhadas), by retry date.
SELECT proxima_tentativa, count(*) AS aguardando_retentativa
FROM checkout_recorrencias
WHERE status = 'ativo' AND proxima_tentativa IS NOT NULL
GROUP BY proxima_tentativa
ORDER BY proxima_tentativa;

-- On hold, by reason (they wait for an operator: POST /recorrencias/:id/reativar).
SELECT motivo_hold, count(*) AS em_hold, min(hold_em) AS hold_mais_antigo
FROM checkout_recorrencias
WHERE status = 'hold'
GROUP BY motivo_hold
ORDER BY em_hold DESC, motivo_hold;

-- Today's charge attempts by status, with amounts (pendente: the gateway's answer is not known yet).
SELECT status AS tentativa_status, count(*) AS tentativas, sum(valor_centavos) AS valor_centavos
FROM checkout_recorrencia_cobrancas
WHERE data_negocio = (now() AT TIME ZONE 'America/Sao_Paulo')::date
GROUP BY status
ORDER BY status;

-- Unresolved attempts of any date, oldest first (resumed with the same key, never replaced; bloqueada: the
-- gateway answered 409 and the attempt waits for an operator's POST /recorrencias/:id/cobrancas/:id/resolver).
SELECT id AS tentativa_id, recorrencia_id, ciclo, tentativa, chave_idempotencia, envios, criado_em,
  date_trunc('second', now() - criado_em) AS idade, codigo_recusa IS NOT NULL AS bloqueada
FROM checkout_recorrencia_cobrancas
WHERE status = 'pendente'
ORDER BY criado_em
LIMIT 20;

-- Queue state from pg-boss: live jobs (and failed ones) by queue and state. Completed and cancelled jobs are
-- left out: pg-boss keeps them for JOB_HISTORY_RETENTION_DAYS, and counting them reads millions of rows. Naming the
-- queues and these states lets Postgres answer from pg-boss's index of live jobs.
SELECT name AS fila, state::text AS estado, count(*) AS jobs
FROM pgboss.job
WHERE name = ANY (ARRAY['processar_recorrencias_do_dia', 'retentar_cobrancas_falhadas',
    'notificar_recorrencias_hold', 'limpar_recorrencias_antigas', 'cobrar_recorrencia', 'cobrar_recorrencia_dlq',
    'enviar_aviso_vendedor', 'enviar_evento_checkout'])
  AND state IN ('created', 'retry', 'active', 'failed')
GROUP BY name, state
ORDER BY name, state;

-- Jobs completed in the last 15 minutes, by queue (the cost follows the window's work, not the history).
SELECT name AS fila, count(*) AS concluidos_15m
FROM pgboss.job
WHERE name = ANY (ARRAY['processar_recorrencias_do_dia', 'retentar_cobrancas_falhadas',
    'notificar_recorrencias_hold', 'limpar_recorrencias_antigas', 'cobrar_recorrencia', 'cobrar_recorrencia_dlq',
    'enviar_aviso_vendedor', 'enviar_evento_checkout'])
  AND completed_on > now() - interval '15 minutes' AND state = 'completed'
GROUP BY name
ORDER BY name;

-- Dead-lettered charges waiting for an operator (POST /jobs/:id/retry sends one back to its queue), with the
-- recurrence's unresolved attempt, if any (bloqueio: why it waits for an operator's resolver, if it does).
-- One sent before (envios > 0) must be redriven before tentativa_criada_em + GATEWAY_KEY_RETENTION_HOURS
-- (24): past that it is blocked (idempotency_key_expired) rather than looked up, and the gateway must be
-- searched by hand.
SELECT j.id AS job_id, j.data->>'recorrenciaId' AS recorrencia_id, j.data->>'dataNegocio' AS data_negocio,
  j.created_on AS no_dlq_desde, c.id AS tentativa_pendente, c.envios, c.criado_em AS tentativa_criada_em,
  c.codigo_recusa AS bloqueio
FROM pgboss.job j
LEFT JOIN checkout_recorrencia_cobrancas c
  ON c.recorrencia_id::text = j.data->>'recorrenciaId' AND c.status = 'pendente'
WHERE j.name = 'cobrar_recorrencia_dlq' AND j.state IN ('created', 'retry')
ORDER BY j.created_on
LIMIT 20;

-- The last task runs.
SELECT tarefa, data_negocio, status AS execucao_status, forcada, iniciada_em, finalizada_em, contagens, erro
FROM execucoes_tarefas
ORDER BY iniciada_em DESC
LIMIT 20;

-- Has each task succeeded for today's business date?
SELECT t.tarefa,
  EXISTS (SELECT 1 FROM execucoes_tarefas e
          WHERE e.tarefa = t.tarefa AND e.status = 'sucesso'
            AND e.data_negocio = (now() AT TIME ZONE 'America/Sao_Paulo')::date) AS sucesso_hoje,
  (SELECT max(e.finalizada_em) FROM execucoes_tarefas e WHERE e.tarefa = t.tarefa AND e.status = 'sucesso')
    AS ultimo_sucesso
FROM unnest(ARRAY['processar_recorrencias_do_dia', 'retentar_cobrancas_falhadas',
  'notificar_recorrencias_hold', 'limpar_recorrencias_antigas']) AS t (tarefa)
ORDER BY t.tarefa;

-- Paused queues (tarefas_pausadas): paused across the cluster until resumed (POST /tasks/:name/resume).
SELECT fila AS fila_pausada, pausada_em, pausada_por, motivo,
  date_trunc('second', now() - pausada_em) AS pausada_ha
FROM tarefas_pausadas
ORDER BY fila;

-- Seller notices (avisos_vendedores) by status (delivered ones are kept NOTICE_RETENTION_DAYS), with the
-- oldest not delivered (pendente or falhou).
SELECT status AS aviso_status, count(*) AS avisos, min(criado_em) AS mais_antigo
FROM avisos_vendedores
GROUP BY status
ORDER BY status;
