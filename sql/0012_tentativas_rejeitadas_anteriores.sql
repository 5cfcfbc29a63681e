-- The refusals recorded as 'recusada' before 0011 become 'rejeitada': no gateway reference, not reversible,
-- and one of the codes only a refused request is given (the contract's 400 and 422 error codes, the client's
-- refusal of an unusable key, or the HTTP status when the body had none). A decline's code is the issuer's
-- (51, 14, R1, ...) and never one of these. Row locks only: the service runs on while the tables are read.
UPDATE checkout_recorrencia_cobrancas
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND recusa_reversivel = false
  AND codigo_recusa IN ('invalid_request', 'unprocessable', 'invalid_idempotency_key', 'http_400', 'http_422');
UPDATE checkout_recorrencia_cobrancas_arquivo
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND recusa_reversivel = false
  AND codigo_recusa IN ('invalid_request', 'unprocessable', 'invalid_idempotency_key', 'http_400', 'http_422');
