-- A hold is dated: hold_em says when it began, and the seller notices tell holds apart by it (hold_avisado_em
-- holds the hold_em of the hold announced). Every code path dates the holds it writes; this makes it a rule of
-- the table. A hold left undated by an earlier release is dated by its last change (atualizado_em), the
-- closest record of when it began, and stays unannounced (its hold_avisado_em differs), so the next notice
-- lists it once.
-- NOT VALID: adding the check takes the table's exclusive lock only for an instant, without scanning it; 0014
-- validates the existing rows in a transaction of its own, under a lock that lets charges write.
UPDATE checkout_recorrencias SET hold_em = atualizado_em WHERE status = 'hold' AND hold_em IS NULL;
ALTER TABLE checkout_recorrencias ADD CONSTRAINT checkout_recorrencias_hold_tem_data
  CHECK (status <> 'hold' OR hold_em IS NOT NULL) NOT VALID;
