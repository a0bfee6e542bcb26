-- A day's first 23 hours added up ahead of its close (#16).
--
-- The pass that closes a day read all of its 600,000 hour rows (at 25,000 meters), to add
-- them up per meter and to take out its hourly profiles. Once a day has its reads of 23:00
-- (hour 22's last), a pass keeps hours 0-22 added up per meter and feeder here, so the close
-- reads 25,000 of these rows and the last hour's 25,000. The sums are those of
-- kpi_meter_hours: they add up with an hour's rows as the hours do with each other. The
-- hours' kWh, peers' kWh and export (1 or 0) are kept as lists of 24 beside the hour of
-- each, in no order, NaN after the last. A pass that recomputes any of hours 0-22 forgets
-- them (the next pass adds them up again); the close uses them only while hours 0-22 hold
-- the reads they were made from (hours_reads, against kpi_refreshed_hours: a process of
-- the release before recomputes hours without forgetting them). They go with the day's
-- hour rows.
CREATE TABLE public.kpi_meter_day_ahead (
    tenant_id        text             NOT NULL,
    day              timestamptz      NOT NULL,
    meter_id         text             NOT NULL,
    feeder_id        text             NOT NULL,
    reads            integer          NOT NULL,
    interval_minutes integer          NOT NULL,
    kwh              double precision NOT NULL,
    kwh_squares      double precision NOT NULL,
    peer_kwh         double precision NOT NULL,
    peer_squares     double precision NOT NULL,
    kwh_peer         double precision NOT NULL,
    zero_reads       integer          NOT NULL,
    exported         boolean          NOT NULL,
    hours_reads      bigint           NOT NULL,  -- hours 0-22's reads then, the tenant's
    hours            double precision[] NOT NULL,
    hour_kwh         double precision[] NOT NULL,
    hour_peer        double precision[] NOT NULL,
    hour_sunlit      double precision[] NOT NULL,
    PRIMARY KEY (tenant_id, day, meter_id, feeder_id)
);

-- A day's hour rows gone, every tenant's, with what was added up ahead of them.
CREATE OR REPLACE FUNCTION public.kpi_drop_hours(p_day timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS public.%I', public.kpi_hours_partition(p_day));
    DELETE FROM public.kpi_refreshed_hours WHERE day = p_day;
    DELETE FROM public.kpi_meter_day_ahead WHERE day = p_day;
END
$$;
