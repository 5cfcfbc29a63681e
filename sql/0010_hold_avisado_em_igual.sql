-- hold_avisado_em now holds the hold_em of the hold a notice announced, not the notice's cut-off: a hold is
-- new while the two differ. Marking by "stamped on or before the cut-off" could mark a hold the notice never
-- read (a re-hold whose transaction began before the read and committed after it). The holds announced so far
-- keep their mark.
UPDATE checkout_recorrencias
SET hold_avisado_em = hold_em
WHERE status = 'hold' AND hold_avisado_em >= hold_em;
