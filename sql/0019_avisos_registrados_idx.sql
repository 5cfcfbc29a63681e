-- The metric of seller notices recorded but not sent (a worker without NOTICE_WEBHOOK_URL ran
-- notificar_recorrencias_hold) counts the latest notice date's `registrado` rows: a range on this index, not a
-- pass over months of notices at every scrape. A plain CREATE INDEX blocks notice writes (the 18:00 task and
-- deliveries, never a charge) while it builds: one row per seller and day with holds, so milliseconds to
-- seconds, under the migrator's lock timeout.
CREATE INDEX avisos_vendedores_registrados_idx ON avisos_vendedores (data_negocio) WHERE status = 'registrado';
