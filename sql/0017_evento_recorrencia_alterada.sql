-- A checkout event for every change made through the API (pausar, retomar, cancelar, reativar, PATCH):
-- 'recorrencia_alterada', carrying the recurrence as the change left it. Without it, an older event delivered
-- late (a decline's snapshot, status 'ativo') was the newest the checkout had, and undid a cancel it asked for.
-- NOT VALID: every existing row satisfies the wider check, so the table is not scanned while this migration
-- holds its exclusive lock (taken under MIGRATION_LOCK_TIMEOUT_MS, retried by the migrator).
ALTER TABLE eventos_checkout DROP CONSTRAINT eventos_checkout_tipo_valido;
ALTER TABLE eventos_checkout ADD CONSTRAINT eventos_checkout_tipo_valido
  CHECK (tipo IN ('cobranca_aprovada', 'cobranca_recusada', 'recorrencia_em_hold', 'recorrencia_concluida',
                  'recorrencia_alterada')) NOT VALID;
