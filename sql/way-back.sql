-- The hand-back lists for the way back to the old system: psql "$DATABASE_URL" -f sql/way-back.sql
-- Read-only; run it after this service's charge path is stopped (README: "The way back"), so no charge
-- lands after the lists are taken. Plain SQL only (no psql meta-commands), like sql/metrics.sql.
-- "Since the cutover": attempts of business dates on or after the cutover in force, the latest import's that
-- gave one (an import with --replace-cutover may have moved it earlier; every attempt when no import gave
-- one), that is, this service's own time.
-- Lists 1, 3 and 4 read the archive too (`arquivada`: true): limpar_recorrencias_antigas moves ended
-- recurrences there with their attempts, and a cancellation or a charge made here is owed to the old system all
-- the same. What purge-archive deleted is gone for good: run the way back before purging anything since the
-- cutover. List 2 needs only the live tables: a recurrence with a pending attempt is never archived.

-- 1. Charged here: mark each cycle paid in the old system before it runs again, or the customer is charged
-- twice. Imported recurrences only; the ones created here are in list 3.
WITH recorrencias AS (
  SELECT id, id_legado, false AS arquivada FROM checkout_recorrencias
  UNION ALL SELECT id, id_legado, true FROM checkout_recorrencias_arquivo
), cobrancas AS (
  SELECT recorrencia_id, ciclo, status, valor_centavos, moeda, gateway_ref, resolvida_em, data_negocio
  FROM checkout_recorrencia_cobrancas
  UNION ALL SELECT recorrencia_id, ciclo, status, valor_centavos, moeda, gateway_ref, resolvida_em, data_negocio
  FROM checkout_recorrencia_cobrancas_arquivo
)
SELECT r.id_legado, c.recorrencia_id, c.ciclo, c.valor_centavos, c.moeda, c.gateway_ref, c.resolvida_em,
  r.arquivada
FROM cobrancas c
JOIN recorrencias r ON r.id = c.recorrencia_id
WHERE c.status = 'aprovada' AND r.id_legado IS NOT NULL
  AND c.data_negocio >= coalesce((SELECT corte FROM importacoes_legado WHERE corte IS NOT NULL ORDER BY id DESC LIMIT 1), '-infinity')
ORDER BY r.id_legado, c.ciclo;

-- 2. Sent, answer never known (blocked ones included): the gateway may have charged. Look each key up
-- (GET $GATEWAY_URL/v1/charges/<chave_idempotencia>): approved, mark the cycle paid as in list 1; declined or
-- 404, nothing was charged and the old system may charge the cycle. Never hand these back unchecked. A key
-- created longer ago than the gateway keeps keys (GATEWAY_KEY_RETENTION_HOURS) may be forgotten: a 404 then
-- proves nothing, so search the gateway's dashboard by recorrencia_id and ciclo (the charge's metadata).
SELECT r.id_legado, c.recorrencia_id, c.ciclo, c.valor_centavos, c.chave_idempotencia, c.envios,
  c.criado_em, c.enviada_em, c.codigo_recusa IS NOT NULL AS bloqueada
FROM checkout_recorrencia_cobrancas c
JOIN checkout_recorrencias r ON r.id = c.recorrencia_id
WHERE c.status = 'pendente' AND c.envios > 0
  AND c.data_negocio >= coalesce((SELECT corte FROM importacoes_legado WHERE corte IS NOT NULL ORDER BY id DESC LIMIT 1), '-infinity')
ORDER BY r.id_legado NULLS LAST, c.recorrencia_id;

-- 3. Created or changed here (through the API, or by an operator: reativar, pausar, cancelar, PATCH): the old
-- system does not know these values. Carry each one back as it stands here (a cancellation the old system
-- missed would be charged again); proxima_cobranca already counts the cycles charged here. A recurrence
-- resumed here whose proxima_cobranca is before cobrar_a_partir_de still owes that cycle from before its pause:
-- the cycles after it from pausada_desde up to cobrar_a_partir_de, and in each [from, until) pair of
-- pausas_anteriores, fell in a pause and are not to be charged (null pausada_desde: every cycle after
-- proxima_cobranca before cobrar_a_partir_de).
WITH recorrencias AS (
  SELECT id, id_legado, status, proxima_cobranca, valor_centavos, periodicidade, dia_ancora, cobrar_a_partir_de,
    pausada_desde, pausas_anteriores, false AS arquivada
  FROM checkout_recorrencias
  UNION ALL SELECT id, id_legado, status, proxima_cobranca, valor_centavos, periodicidade, dia_ancora,
    cobrar_a_partir_de, pausada_desde, pausas_anteriores, true
  FROM checkout_recorrencias_arquivo
)
SELECT r.id_legado, r.id AS recorrencia_id, r.status, r.proxima_cobranca, r.valor_centavos, r.periodicidade,
  r.dia_ancora, r.cobrar_a_partir_de, r.pausada_desde, r.pausas_anteriores, (SELECT string_agg(DISTINCT a.campo, ', ') FROM checkout_recorrencias_alteracoes a
    WHERE a.recorrencia_id = r.id) AS campos_alterados, r.arquivada
FROM recorrencias r
WHERE r.id_legado IS NULL
  OR EXISTS (SELECT 1 FROM checkout_recorrencias_alteracoes a WHERE a.recorrencia_id = r.id)
ORDER BY r.id_legado NULLS FIRST, r.id;

-- 4. Declined or refused here, for the old system's records: it would try these cycles again (an
-- irreversible decline put the recurrence on hold here).
WITH recorrencias AS (
  SELECT id, id_legado, false AS arquivada FROM checkout_recorrencias
  UNION ALL SELECT id, id_legado, true FROM checkout_recorrencias_arquivo
), cobrancas AS (
  SELECT recorrencia_id, ciclo, status, codigo_recusa, recusa_reversivel, resolvida_em, data_negocio
  FROM checkout_recorrencia_cobrancas
  UNION ALL SELECT recorrencia_id, ciclo, status, codigo_recusa, recusa_reversivel, resolvida_em, data_negocio
  FROM checkout_recorrencia_cobrancas_arquivo
)
SELECT r.id_legado, c.recorrencia_id, c.ciclo, c.status, c.codigo_recusa, c.recusa_reversivel, c.resolvida_em,
  r.arquivada
FROM cobrancas c
JOIN recorrencias r ON r.id = c.recorrencia_id
WHERE c.status IN ('recusada', 'rejeitada')
  AND c.data_negocio >= coalesce((SELECT corte FROM importacoes_legado WHERE corte IS NOT NULL ORDER BY id DESC LIMIT 1), '-infinity')
ORDER BY r.id_legado NULLS LAST, c.recorrencia_id, c.ciclo;
