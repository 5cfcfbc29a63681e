-- The blocked-attempt resolver answers a repeated call with the first call's audited answer, looked up by
-- target and action while it holds the recurrence's lock. Without this index that lookup read the whole audit
-- (which is never purged) on every refused or repeated call; with it, a range of the recurrence's entries.
-- A plain CREATE INDEX blocks audit writes (admin actions) while it builds: the audit holds one row per
-- operator action, so the build takes milliseconds to seconds, under the migrator's lock timeout.
CREATE INDEX auditoria_admin_alvo_acao_idx ON auditoria_admin (alvo, acao, id DESC);
