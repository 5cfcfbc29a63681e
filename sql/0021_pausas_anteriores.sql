-- The earlier pauses of a recurrence still ahead of its next charge, as [pausada_desde, cobrar_a_partir_de]
-- pairs of São Paulo dates: a `pausar` while a cycle owed from before the last pause is unpaid and that pause
-- still has a cycle after it keeps that pause here, so each pause's cycles stay its own (the days between
-- two pauses are not a pause). Empty otherwise. A constant default: no rewrite of the table.
ALTER TABLE checkout_recorrencias ADD COLUMN pausas_anteriores jsonb NOT NULL DEFAULT '[]';
ALTER TABLE checkout_recorrencias_arquivo ADD COLUMN pausas_anteriores jsonb NOT NULL DEFAULT '[]';
