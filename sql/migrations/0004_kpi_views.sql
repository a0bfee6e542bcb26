-- KPI views (SPEC §7). They read what was ingested — public.meter_reads_electric, and
-- the ingest rollup kept from it — never the emulator's ground truth (ami_events).
-- Filter them by tenant_id (and read_at or day): every grouping includes both, so the
-- filters reach the index scans.

-- Per feeder and interval: meters reporting, energy, mean and minimum voltage.
CREATE OR REPLACE VIEW public.kpi_feeder_load AS
SELECT tenant_id, feeder_id, read_at,
       COUNT(*)                 AS meters_reporting,
       SUM(kwh)                 AS kwh,
       AVG(voltage)             AS voltage_mean,
       MIN(voltage)             AS voltage_min
FROM public.meter_reads_electric
GROUP BY tenant_id, feeder_id, read_at;

-- Per feeder and interval, against ANSI C84.1 at 120 V nominal: Range A 114–126 V,
-- Range B 110–127 V.
CREATE OR REPLACE VIEW public.kpi_voltage_anomalies AS
SELECT tenant_id, feeder_id, read_at,
       COUNT(*)                                                  AS reads,
       COUNT(*) FILTER (WHERE voltage < 114 OR voltage > 126)    AS outside_range_a,
       COUNT(*) FILTER (WHERE voltage < 110 OR voltage > 127)    AS outside_range_b,
       MIN(voltage)                                              AS voltage_min,
       MAX(voltage)                                              AS voltage_max
FROM public.meter_reads_electric
GROUP BY tenant_id, feeder_id, read_at;

-- Per interval: reads received against meters expected, the meters seen in the trailing
-- day, counted as the most meters that reported in any one interval of that day (from the
-- ingest rollup, so it stays fast at any table size).
CREATE OR REPLACE VIEW public.kpi_read_completeness AS
WITH per_interval AS (
    SELECT tenant_id, read_at, SUM(reads)::bigint AS reads_received
    FROM public.meter_reads_rollup
    GROUP BY tenant_id, read_at
)
SELECT tenant_id, read_at, reads_received,
       MAX(reads_received) OVER trailing_day AS meters_expected,
       reads_received::double precision
           / NULLIF(MAX(reads_received) OVER trailing_day, 0) AS completeness
FROM per_interval
WINDOW trailing_day AS (PARTITION BY tenant_id ORDER BY read_at
                        RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW);

-- Per meter and UTC day: the features theft detection compares.
--   kwh_per_read  mean energy of a read
--   zero_reads    reads of exactly 0 kWh (an honest meter never reads 0: base load)
--   variation     coefficient of variation of the day's reads (a flat day is suspicious)
--   peer_corr     correlation of the day's reads with the feeder's mean profile
-- Computing them means reading a whole day of the tenant's rows, so they are kept in a
-- table, refreshed day by day from meter_reads_electric (sql/queries.sql,
-- refresh_meter_days) whenever a day's reads changed (gridlens/kpi_refresh.py).
CREATE TABLE IF NOT EXISTS public.kpi_meter_day_features (
    tenant_id        text             NOT NULL,
    day              timestamptz      NOT NULL,
    meter_id         text             NOT NULL,
    feeder_id        text             NOT NULL,
    reads            integer          NOT NULL,
    interval_minutes smallint         NOT NULL,
    kwh_per_read     double precision,
    zero_reads       integer          NOT NULL,
    variation        double precision,
    peer_corr        double precision,
    PRIMARY KEY (tenant_id, day, meter_id)
);

-- The reads each day had when its features were last computed.
CREATE TABLE IF NOT EXISTS public.kpi_refreshed_days (
    tenant_id    text        NOT NULL,
    day          timestamptz NOT NULL,
    reads        bigint      NOT NULL,
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day)
);

CREATE OR REPLACE VIEW public.kpi_meter_days AS
SELECT tenant_id, feeder_id, meter_id, day, reads, interval_minutes, kwh_per_read,
       zero_reads, variation, peer_corr
FROM public.kpi_meter_day_features;

-- Theft suspects per meter and day: consumption far below the meter's own trailing
-- baseline (up to 7 earlier days) relative to its feeder peers on the same day, or a day
-- whose shape gave itself away: stretches of zero reads, no variation, or no correlation
-- with the feeder's profile. Between them these catch the six false-data-injection
-- patterns h1–h6 of Jokar et al. (2016) that the emulator injects (README, "KPI").
-- Only days with reads covering at least half the day are judged. The peers' median
-- ratio is computed with window functions (no self-join), so the view stays one pass.
CREATE OR REPLACE VIEW public.kpi_theft_suspects AS
WITH days AS (
    SELECT d.*,
           d.kwh_per_read / NULLIF(AVG(d.kwh_per_read) OVER (
               PARTITION BY d.tenant_id, d.meter_id ORDER BY d.day
               ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING), 0) AS own_ratio
    FROM public.kpi_meter_days d
), ranked AS (
    SELECT days.*,
           ROW_NUMBER() OVER (PARTITION BY tenant_id, feeder_id, day
                              ORDER BY own_ratio NULLS LAST)          AS position,
           COUNT(own_ratio) OVER (PARTITION BY tenant_id, feeder_id, day) AS peers
    FROM days
    WHERE reads * interval_minutes >= 720
), scored AS (
    SELECT tenant_id, feeder_id, meter_id, day, reads, own_ratio, zero_reads, variation,
           peer_corr,
           own_ratio / NULLIF(AVG(own_ratio) FILTER (
               WHERE position IN ((peers + 1) / 2, (peers + 2) / 2))
               OVER (PARTITION BY tenant_id, feeder_id, day), 0) AS peer_ratio
    FROM ranked
)
SELECT scored.*,
       array_remove(ARRAY[
           CASE WHEN peer_ratio < 0.85 THEN 'consumption-drop' END,
           CASE WHEN zero_reads >= 4 THEN 'zero-reads' END,
           CASE WHEN variation < 0.15 THEN 'flat-profile' END,
           CASE WHEN peer_corr < 0.3 THEN 'profile-mismatch' END
       ], NULL) AS reasons
FROM scored
WHERE peer_ratio < 0.85 OR zero_reads >= 4 OR variation < 0.15 OR peer_corr < 0.3;
