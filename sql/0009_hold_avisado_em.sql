-- When a seller notice announced this recurrence's hold: the cut-off of that notice (the moment it read the
-- holds). A hold is new for notificar_recorrencias_hold until then, that is while hold_avisado_em is null or
-- before hold_em (a later hold of the same recurrence). Recorded on the recurrence, in the notice's own
-- transaction, instead of inferred from the seller's earlier notices: a rerun for an earlier date, a notice
-- listing only the first 500 of a burst, or the pruning of old notices no longer makes a hold new again.
ALTER TABLE checkout_recorrencias ADD COLUMN hold_avisado_em timestamptz;
ALTER TABLE checkout_recorrencias_arquivo ADD COLUMN hold_avisado_em timestamptz;

-- The holds that the notices sent so far counted (stamped on or before the seller's latest cut-off) stay
-- announced.
UPDATE checkout_recorrencias r
SET hold_avisado_em = a.corte_em
FROM (SELECT vendedor_id, max(corte_em) AS corte_em FROM avisos_vendedores GROUP BY vendedor_id) a
WHERE r.vendedor_id = a.vendedor_id AND r.status = 'hold' AND r.hold_em <= a.corte_em;

-- Only the inference above read it.
DROP INDEX avisos_vendedores_vendedor_corte_idx;
