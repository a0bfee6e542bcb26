-- KPI features kept hour by hour, so one new interval costs one hour of reads (#16).
--
-- 0010 recomputed a tenant's whole day from its reads whenever any of them changed: at
-- 25,000 meters, 2.6 s per million reads of the day, and a day holds 2.4 million. Now the
-- day's statistics are sums kept per meter-hour (kpi_meter_hours: counts, sums and sums
-- of squares and products, which add up across hours exactly as the reads would), and a
-- pass recomputes only the hours whose read count changed (kpi_refreshed_hours, against
-- the ingest rollup), then adds the day's hours up per meter. An hour is the reads ending
-- in (hour, hour + 1 h] (UTC), the hour its interval lies in for every interval length
-- SPEC §3 allows.
--
-- The verdict (own_ratio ... reasons, and the hourly profiles and baseline it is made
-- from) is made once the day is over, and again whenever a day before it or its own reads
-- change: it compares a whole day with its peers and its baseline, and a day in progress
-- is judged by no one (the API shows the latest complete day). kpi_refreshed_days.judged
-- records whether it was made.
--
-- The verdict's rules are gridlens/verdicts.py now, every meter at once: as SQL functions
-- called per meter they took about 2 s at 25,000 meters (the same figures, to 1e-9).
--
-- A day's hour rows are kept in a partition of their own while reads may still come
-- (until the day has been over for a day), then dropped at once: a late read for an older
-- day recomputes that day's hours from its reads.
CREATE TABLE public.kpi_meter_hours (
    tenant_id        text             NOT NULL,
    day              timestamptz      NOT NULL,
    hour             smallint         NOT NULL,  -- 0-23, UTC
    meter_id         text             NOT NULL,
    feeder_id        text             NOT NULL,
    reads            integer          NOT NULL,
    interval_minutes integer          NOT NULL,  -- the shortest
    kwh              double precision NOT NULL,  -- Σ kWh
    kwh_squares      double precision NOT NULL,  -- Σ kWh²
    peer_kwh         double precision NOT NULL,  -- Σ the feeder's mean kWh at the read's time
    peer_squares     double precision NOT NULL,
    kwh_peer         double precision NOT NULL,  -- Σ kWh × peer kWh
    zero_reads       integer          NOT NULL,  -- nothing delivered, nothing received
    exported         boolean          NOT NULL,  -- any kWh received
    sunlit           boolean          NOT NULL   -- any meter of the feeder exported
) PARTITION BY LIST (day);

CREATE INDEX kpi_meter_hours_hour ON public.kpi_meter_hours (tenant_id, hour);

CREATE TABLE public.kpi_refreshed_hours (
    tenant_id text        NOT NULL,
    day       timestamptz NOT NULL,
    hour      smallint    NOT NULL,
    reads     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, day, hour)
);

ALTER TABLE public.kpi_refreshed_days ADD COLUMN judged boolean NOT NULL DEFAULT false;

-- What the verdict is made from, kept with the day's features: the metered kWh per hour
-- (hour_kwh leaves out a generator's sunlit hours) and whether the feeder exported then.
ALTER TABLE public.kpi_meter_day_features
    ADD COLUMN exported     boolean NOT NULL DEFAULT false,
    ADD COLUMN hour_metered double precision[],
    ADD COLUMN hour_sunlit  boolean[];

CREATE OR REPLACE VIEW public.kpi_meter_days AS
SELECT tenant_id, feeder_id, meter_id, day, reads, interval_minutes, kwh_per_read,
       zero_reads, variation, peer_corr,
       (reads * interval_minutes / 1440.0)::double precision AS completeness,
       reads * interval_minutes >= 0.8 * 1440 AS judged,
       own_ratio, own_corr, own_error, peer_ratio, baseline_days, near_zero, reasons,
       (kwh_per_read * 60.0 / interval_minutes)::double precision AS mean_kw,
       hour_kwh, hour_peer, baseline, generator, peer_rank, exported, hour_metered, hour_sunlit
FROM public.kpi_meter_day_features;

-- A meter's latest earlier day, found by an index lookup instead of a sort of 8 days.
CREATE INDEX kpi_meter_day_features_meter
    ON public.kpi_meter_day_features (tenant_id, meter_id, day);

-- Quickcheck's lists of a day (suspects, near-zero, too few reads to judge) read the few
-- meter-days they can hold, not the day's 25,000 wide rows (sql/migrations/0009, 0010).
CREATE INDEX kpi_meter_day_features_notable ON public.kpi_meter_day_features (tenant_id, day)
WHERE cardinality(reasons) > 0 OR near_zero OR NOT (reads * interval_minutes >= 0.8 * 1440);

CREATE FUNCTION public.kpi_hours_partition(p_day timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT 'kpi_meter_hours_p' || to_char(p_day AT TIME ZONE 'UTC', 'YYYYMMDD')
$$;

-- The day's partition of hour rows, made if missing (only the refresher, under its lock).
CREATE FUNCTION public.kpi_ensure_hours_partition(p_day timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS public.%I PARTITION OF public.kpi_meter_hours'
                   ' FOR VALUES IN (%L)', public.kpi_hours_partition(p_day), p_day);
END
$$;

-- A day's hour rows gone, every tenant's (their hours are recomputed from the reads if
-- the day changes again).
CREATE FUNCTION public.kpi_drop_hours(p_day timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS public.%I', public.kpi_hours_partition(p_day));
    DELETE FROM public.kpi_refreshed_hours WHERE day = p_day;
END
$$;

-- Retention (0013) takes the day's hour rows too.
CREATE OR REPLACE FUNCTION public.gridlens_drop_read_day(p_day timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_day timestamptz := date_trunc('day', p_day, 'UTC');
    v_partition text := public.gridlens_read_partition(v_day);
    v_dropped bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7349827351);  -- one creator or dropper at a time
    -- A table lock brings the catalog up to date (a dropper before may have just gone).
    LOCK TABLE public.meter_reads_rollup IN ROW EXCLUSIVE MODE;
    IF to_regclass('public.' || v_partition) IS NULL
       AND NOT EXISTS (SELECT FROM public.meter_reads_rollup
                       WHERE read_at > v_day AND read_at <= v_day + interval '24 hours') THEN
        RETURN NULL;  -- gone already
    END IF;
    PERFORM set_config('lock_timeout', '1s', true);
    EXECUTE format('DROP TABLE IF EXISTS public.%I', v_partition);
    DELETE FROM public.meter_reads_electric_default
    WHERE read_at > v_day AND read_at <= v_day + interval '24 hours';
    WITH gone AS (
        DELETE FROM public.meter_reads_rollup
        WHERE read_at > v_day AND read_at <= v_day + interval '24 hours'
        RETURNING reads
    )
    SELECT COALESCE(SUM(reads), 0) INTO v_dropped FROM gone;
    PERFORM public.kpi_drop_hours(v_day);
    DELETE FROM public.kpi_meter_day_features
    WHERE day = v_day
      AND tenant_id IN (SELECT tenant_id FROM public.kpi_refreshed_days WHERE day = v_day);
    DELETE FROM public.kpi_refreshed_days WHERE day = v_day;
    DELETE FROM public.tenant_meter_set_days WHERE day = v_day;
    DELETE FROM public.tenant_meter_days WHERE day = v_day;
    DELETE FROM public.tenant_meters AS meter
    WHERE meter.first_read_at <= v_day + interval '24 hours'
      AND NOT EXISTS (SELECT FROM public.tenant_meter_days AS seen
                      WHERE seen.tenant_id = meter.tenant_id AND seen.meter_id = meter.meter_id);
    RETURN v_dropped;
END
$$;

DROP FUNCTION public.kpi_theft_reasons(double precision, double precision, integer, integer,
                                       double precision, double precision, double precision);
DROP FUNCTION public.kpi_compare_hours(double precision[], double precision[],
                                       double precision[], integer);
DROP FUNCTION public.kpi_rank_corr(double precision[], double precision[]);
DROP FUNCTION public.kpi_next_baseline(double precision[], integer, boolean,
                                       double precision[], double precision[]);

-- Every day's features are computed again, hour by hour, by the next pass.
DELETE FROM public.kpi_refreshed_days;
