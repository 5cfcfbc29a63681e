-- An attempt the gateway refused as a request (400/422: nothing ran under its key, the issuer never saw the
-- card) ends as 'rejeitada', not 'recusada': it is not a decline. It does not count in the day's declines or
-- the brand retry caps, and it does not make reativar or retomar treat the card as irreversibly declined. Its
-- codigo_recusa is the gateway's error code and mensagem the gateway's words (card token taken out).
-- NOT VALID: every existing row satisfies the wider check, so the tables are not scanned while this
-- migration holds their exclusive lock (0012 converts the earlier rows with row locks only).
-- Waiting longer for the lock would queue every charge behind this migration: fail instead, and rerun migrate.
SET LOCAL lock_timeout = '5s';
ALTER TABLE checkout_recorrencia_cobrancas DROP CONSTRAINT checkout_recorrencia_cobrancas_status_valido;
ALTER TABLE checkout_recorrencia_cobrancas ADD CONSTRAINT checkout_recorrencia_cobrancas_status_valido
  CHECK (status IN ('pendente', 'aprovada', 'recusada', 'rejeitada')) NOT VALID;
ALTER TABLE checkout_recorrencia_cobrancas_arquivo DROP CONSTRAINT checkout_recorrencia_cobrancas_status_valido;
ALTER TABLE checkout_recorrencia_cobrancas_arquivo ADD CONSTRAINT checkout_recorrencia_cobrancas_status_valido
  CHECK (status IN ('pendente', 'aprovada', 'recusada', 'rejeitada')) NOT VALID;
