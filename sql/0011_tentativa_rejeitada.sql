-- An attempt the gateway refused as a request (400/422: nothing ran under its key, the issuer never saw the
-- card) ends as 'rejeitada', not 'recusada': it is not a decline. It does not count in the day's declines, and
-- it does not make reativar or retomar treat the card as irreversibly declined. Its codigo_recusa is the
-- gateway's error code and mensagem the gateway's words (card token taken out).
-- NOT VALID: every existing row satisfies the wider check, so the table is not scanned under the exclusive lock.
ALTER TABLE checkout_recorrencia_cobrancas DROP CONSTRAINT checkout_recorrencia_cobrancas_status_valido;
ALTER TABLE checkout_recorrencia_cobrancas ADD CONSTRAINT checkout_recorrencia_cobrancas_status_valido
  CHECK (status IN ('pendente', 'aprovada', 'recusada', 'rejeitada')) NOT VALID;
ALTER TABLE checkout_recorrencia_cobrancas_arquivo DROP CONSTRAINT checkout_recorrencia_cobrancas_status_valido;
ALTER TABLE checkout_recorrencia_cobrancas_arquivo ADD CONSTRAINT checkout_recorrencia_cobrancas_status_valido
  CHECK (status IN ('pendente', 'aprovada', 'recusada', 'rejeitada')) NOT VALID;

-- Refusals recorded so far as 'recusada': no gateway reference, and the gateway's error code (lower-case
-- words such as invalid_request) where a decline has an ABECS code (digits or upper case: 51, R1).
UPDATE checkout_recorrencia_cobrancas
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND codigo_recusa ~ '^[a-z][a-z0-9_]*$';
UPDATE checkout_recorrencia_cobrancas_arquivo
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND codigo_recusa ~ '^[a-z][a-z0-9_]*$';
