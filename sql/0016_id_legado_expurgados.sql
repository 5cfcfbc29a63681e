-- The old system's ids of archived recurrences that purge-archive deleted. An import must never bring back a
-- recurrence that ended here; the archive row that told it so is gone after the purge, so its id stays here
-- (a few bytes per recurrence, kept for good). A new table: nothing else is locked or rewritten.
CREATE TABLE id_legado_expurgados (
  id_legado text CONSTRAINT id_legado_expurgados_pkey PRIMARY KEY,
  expurgado_em timestamptz NOT NULL DEFAULT now()
);
