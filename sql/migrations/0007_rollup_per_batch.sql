-- Status rollups kept per job's meter set (one batch of one feeder), not per feeder.
--
-- A feeder with more meters than a batch holds is published as consecutive jobs (25,000
-- meters on 25 feeders: two jobs of 500 per feeder and interval), and consumers start
-- consecutive jobs together. Sharing one rollup row, the second job's update waited for
-- the first job's commit (Lock:transactionid in pg_stat_activity). Keyed by the job's
-- meter set, each job updates a row of its own; readers already SUM the rows.
-- Rows counted before (and by rebuild_rollups) carry the nil meter set.
ALTER TABLE public.meter_reads_rollup
    ADD COLUMN IF NOT EXISTS meter_set uuid NOT NULL
        DEFAULT '00000000-0000-0000-0000-000000000000';

ALTER TABLE public.meter_reads_rollup
    DROP CONSTRAINT meter_reads_rollup_pkey,
    ADD CONSTRAINT meter_reads_rollup_pkey PRIMARY KEY (tenant_id, read_at, feeder_id, meter_set);
