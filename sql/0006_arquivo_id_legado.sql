-- An import must not bring back a recurrence that was archived (ended long ago): it looks the old id up in the
-- archive, which needs this index to stay fast at a million archived rows.
CREATE INDEX checkout_recorrencias_arquivo_id_legado_idx
  ON checkout_recorrencias_arquivo (id_legado) WHERE id_legado IS NOT NULL;
