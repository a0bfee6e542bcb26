-- Reads keyed (tenant_id, read_at, meter_id) instead of (tenant_id, meter_id, read_at).
--
-- A job's reads share one read_at, and read_at grows: under this key a job's 500
-- index entries land side by side at the index's growing end, where the old key
-- scattered them over 500 leaf pages across the whole index. The one index also
-- serves ON CONFLICT (tenant_id, meter_id, read_at) (a unique index on the same
-- columns, in any order) and every read by tenant and time, so the second index
-- goes. Measured on the consumer's statement: 185,000 → 270,000 new rows/s.
--
-- Per-meter history over a long range is no longer served by an index; analytics
-- that need it can add one on (tenant_id, meter_id, read_at), at a cost to ingest.
ALTER TABLE public.meter_reads_electric
    DROP CONSTRAINT meter_reads_electric_pkey,
    ADD CONSTRAINT meter_reads_electric_pkey PRIMARY KEY (tenant_id, read_at, meter_id);

DROP INDEX IF EXISTS public.meter_reads_electric_tenant_read_at;
