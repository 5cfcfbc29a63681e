-- The refusals recorded as 'recusada' before 0011 become 'rejeitada': no gateway reference, not reversible,
-- and one of the codes only a refused request is given (the contract's 400 and 422 error codes, and the
-- client's refusal of a key it cannot send). A decline's code is the issuer's (51, 14, R1, ...) and never one
-- of these. Row locks only: the service runs on while the tables are read. Safe to run again by hand.
UPDATE checkout_recorrencia_cobrancas
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND recusa_reversivel = false
  AND codigo_recusa IN ('invalid_request', 'unprocessable', 'invalid_idempotency_key');
UPDATE checkout_recorrencia_cobrancas_arquivo
SET status = 'rejeitada', recusa_reversivel = NULL
WHERE status = 'recusada' AND gateway_ref IS NULL AND recusa_reversivel = false
  AND codigo_recusa IN ('invalid_request', 'unprocessable', 'invalid_idempotency_key');
