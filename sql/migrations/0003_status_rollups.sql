-- Rollups that keep GET /api/ami/scale/status exact and fast however large the table
-- grows. The consumer maintains them in the same statement (so the same transaction) as
-- each insert, from the rows that insert actually added (sql/queries.sql, insert_reads):
--   COUNT(DISTINCT meter_id) = count of tenant_meters rows for the tenant
--   COUNT(*)                 = SUM(reads) of meter_reads_rollup
--   MAX(read_at)             = MAX(read_at) of meter_reads_rollup
-- Rows written to meter_reads_electric any other way are not counted: rebuild with
-- sql/queries.sql, rebuild_rollups (`gridlens rollups`).

CREATE TABLE IF NOT EXISTS public.tenant_meters (
    tenant_id     text        NOT NULL,
    meter_id      text        NOT NULL,
    first_read_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, meter_id)
);

-- One row per tenant, interval and feeder (a feeder's jobs rarely overlap, so concurrent
-- consumers seldom wait on the same row).
CREATE TABLE IF NOT EXISTS public.meter_reads_rollup (
    tenant_id text        NOT NULL,
    read_at   timestamptz NOT NULL,
    feeder_id text        NOT NULL,
    reads     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, read_at, feeder_id)
);

INSERT INTO public.tenant_meters (tenant_id, meter_id, first_read_at)
SELECT tenant_id, meter_id, MIN(read_at)
FROM public.meter_reads_electric
GROUP BY tenant_id, meter_id
ON CONFLICT DO NOTHING;

INSERT INTO public.meter_reads_rollup (tenant_id, read_at, feeder_id, reads)
SELECT tenant_id, read_at, feeder_id, COUNT(*)
FROM public.meter_reads_electric
GROUP BY tenant_id, read_at, feeder_id
ON CONFLICT DO NOTHING;
