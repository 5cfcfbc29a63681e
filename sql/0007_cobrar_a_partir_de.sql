-- The São Paulo business date of a recurrence's last `retomar`: no new cycle before it is charged. A resume
-- moves an unpaid cycle of the pause forward itself, except while a charge is in flight: that charge's
-- approval sets the next cycle, which may fall inside the pause; the approval then moves it to the first
-- cycle on or after this date and records the ones in between as skipped.
ALTER TABLE checkout_recorrencias ADD COLUMN cobrar_a_partir_de date;
ALTER TABLE checkout_recorrencias_arquivo ADD COLUMN cobrar_a_partir_de date;
