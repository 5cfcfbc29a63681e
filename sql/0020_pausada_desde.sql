-- The São Paulo business date of a recurrence's `pausar`. With `cobrar_a_partir_de` (its `retomar`) it
-- bounds the pause: only the cycles from this date up to the resume's are cycles of the pause, never
-- charged; a cycle that fell due before it is owed and charged after the resume (a zero-day pause forgives
-- nothing). A pause begun while a cycle of an earlier one is still to be settled keeps the earlier start.
-- Null for recurrences paused before this migration: for them, a cycle before the resume is owed only when
-- it was attempted (the rule before it).
ALTER TABLE checkout_recorrencias ADD COLUMN pausada_desde date;
ALTER TABLE checkout_recorrencias_arquivo ADD COLUMN pausada_desde date;
