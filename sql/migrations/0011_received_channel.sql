-- Energy received from the premises (rooftop PV exporting) as a channel of its own.
--
-- A net meter registers two channels: kWh delivered to the premises and kWh received from
-- them; net = delivered − received. `kwh` stays what it always was, the delivered channel,
-- so existing rows and queries keep their meaning; `kwh_received` is 0 for them. A constant
-- default adds the column without rewriting the table (PostgreSQL ≥ 11 keeps it in the
-- catalogue), and the check is NOT VALID so that adding it does not scan the table either:
-- every existing row holds the default, and new rows are checked.
ALTER TABLE public.meter_reads_electric
    ADD COLUMN IF NOT EXISTS kwh_received double precision NOT NULL DEFAULT 0;
ALTER TABLE public.meter_reads_electric
    ADD CONSTRAINT meter_reads_electric_kwh_received_check CHECK (kwh_received >= 0) NOT VALID;

-- The status rollups (0003, 0007) also total both channels, so that status reports energy
-- as it reports reads, without scanning the table. The totals of rows stored before this
-- migration go to each group's nil meter-set row (readers SUM the rows): one pass over the
-- table, once. Rows that consumers of the previous version insert after it are counted
-- without their kWh: run `gridlens rebuild-rollups` after such a rolling upgrade.
ALTER TABLE public.meter_reads_rollup
    ADD COLUMN IF NOT EXISTS kwh double precision NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS kwh_received double precision NOT NULL DEFAULT 0;

INSERT INTO public.meter_reads_rollup AS rollup
    (tenant_id, read_at, feeder_id, meter_set, reads, kwh, kwh_received)
SELECT tenant_id, read_at, feeder_id, '00000000-0000-0000-0000-000000000000', 0, SUM(kwh), 0
FROM public.meter_reads_electric
GROUP BY tenant_id, read_at, feeder_id
ON CONFLICT (tenant_id, read_at, feeder_id, meter_set) DO UPDATE SET kwh = EXCLUDED.kwh;

-- Per feeder and interval: energy delivered and, new, received (appended: the view's
-- existing columns keep their names and order).
CREATE OR REPLACE VIEW public.kpi_feeder_load AS
SELECT tenant_id, feeder_id, read_at,
       COUNT(*)                 AS meters_reporting,
       SUM(kwh)                 AS kwh,
       AVG(voltage)             AS voltage_mean,
       MIN(voltage)             AS voltage_min,
       SUM(kwh_received)        AS kwh_received
FROM public.meter_reads_electric
GROUP BY tenant_id, feeder_id, read_at;
