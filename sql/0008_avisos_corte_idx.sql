-- notificar_recorrencias_hold reads, per seller, the notices whose cut-off falls within the late-commit
-- margin of the latest one (the holds they listed are not new again): a range on this index, not a pass over
-- the seller's whole notice history (one notice a day while the seller has holds).
CREATE INDEX avisos_vendedores_vendedor_corte_idx ON avisos_vendedores (vendedor_id, corte_em);
