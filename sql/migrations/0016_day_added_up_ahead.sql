-- A day's first 23 hours added up ahead of its close (#16).
--
-- The pass that closes a day added up its 600,000 hour rows per meter (at 25,000 meters,
-- about 0.3 s of the close). Once a day's last hour has reads, its hours 0-22 are kept
-- added up per meter and feeder here (api/kpi_judge.py, a pass during that hour), so the
-- close adds 25,000 of these rows to the last hour's 25,000. The rows are the sums of
-- kpi_meter_hours: they add up with an hour's rows as the hours do with each other. A pass
-- that recomputes any of hours 0-22 forgets them (the next pass adds them up again); they
-- go with the day's hour rows.
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
