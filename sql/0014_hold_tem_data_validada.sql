-- Checks the existing rows against 0013's rule (each is dated there). VALIDATE scans the table under a SHARE
-- UPDATE EXCLUSIVE lock, which lets charges read and write meanwhile; in 0013's transaction it would have
-- scanned under the exclusive lock.
ALTER TABLE checkout_recorrencias VALIDATE CONSTRAINT checkout_recorrencias_hold_tem_data;
