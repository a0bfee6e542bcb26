-- Interval reads, one row per meter per interval. Every key includes tenant_id so
-- the table can later be partitioned by read_at and distributed by tenant (SPEC §8)
-- without changing a statement.
CREATE TABLE IF NOT EXISTS public.meter_reads_electric (
    tenant_id        text             NOT NULL,
    meter_id         text             NOT NULL,
    feeder_id        text             NOT NULL,
    read_at          timestamptz      NOT NULL,
    interval_minutes smallint         NOT NULL CHECK (interval_minutes IN (5, 15, 30, 60)),
    kwh              double precision NOT NULL CHECK (kwh >= 0),
    voltage          double precision NOT NULL,
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, meter_id, read_at)
);

-- Status (MAX(read_at)) and the KPI views (the tenant's latest intervals) read by
-- tenant and time; the primary key serves per-meter history.
CREATE INDEX IF NOT EXISTS meter_reads_electric_tenant_read_at
    ON public.meter_reads_electric (tenant_id, read_at);
