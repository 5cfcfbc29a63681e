-- The cluster-wide cap on concurrent gateway calls (GATEWAY_MAX_CONCURRENCY): one row per slot. A charge
-- takes a free slot (or one whose lease ran out, left by a worker that died) before calling the gateway and
-- frees it afterwards. Workers keep the number of rows equal to the configured cap.
CREATE TABLE vagas_gateway (
  vaga integer CONSTRAINT vagas_gateway_pkey PRIMARY KEY,
  job_id uuid,
  -- The lease: past this instant the slot is free again even if its holder never released it.
  ate timestamptz
) WITH (fillfactor = 50);
