-- Reads partitioned by day (declarative range partitioning on read_at; docs/design.md,
-- "History at scale"). A partition holds one UTC day of intervals: the reads ending in
-- (day, day + 1 day], the KPI day (0004), so retention drops whole days of features
-- with whole days of reads. As a range, FROM day + 1 µs TO day + 1 day + 1 µs.
--
-- Partitions are created ahead of the data, here and by the API's background pass
-- (api/partitions.py). A read whose partition does not exist yet lands in the DEFAULT
-- partition, never in the dead letters; the next pass moves it into its own partition.
--
-- The populated table is converted by copying: its rows, in one INSERT, into the new
-- table, within the migrating transaction, which holds the old table's lock throughout.
-- Consumers' inserts wait for it and retry (their statement timeout); nothing is lost.

-- The meters each tenant's reads of a day came from, registered by the first job of each
-- meter set on that day (the insert, sql/queries.sql): after retention drops a day, the
-- meters that remain are those with a day left here (status stays exact).
CREATE TABLE public.tenant_meter_days (
    tenant_id text        NOT NULL,
    meter_id  text        NOT NULL,
    day       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, meter_id, day)
);
CREATE INDEX tenant_meter_days_day ON public.tenant_meter_days (day);

-- The meter sets registered per day, as tenant_meter_sets (0006) once: the first job of a
-- set on a day registers its meters for the day. (tenant_meter_sets stays, for the
-- statement of consumers still running the release before this one during an upgrade.)
CREATE TABLE public.tenant_meter_set_days (
    tenant_id text        NOT NULL,
    day       timestamptz NOT NULL,
    meter_set uuid        NOT NULL,
    PRIMARY KEY (tenant_id, day, meter_set)
);

-- The KPI day of a read: the UTC day its interval lies in.
CREATE FUNCTION public.gridlens_read_day(p_read_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc('day', (p_read_at - interval '1 microsecond') AT TIME ZONE 'UTC')
       AT TIME ZONE 'UTC';

-- The name of a day's read partition (the day: any time within it, UTC).
CREATE FUNCTION public.gridlens_read_partition(p_day timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'meter_reads_electric_p' || to_char(p_day AT TIME ZONE 'UTC', 'YYYYMMDD');

-- Every view of the schema, as it is defined now: the copy below replaces the table they
-- read, and they are recreated over the new one.
CREATE TEMPORARY TABLE gridlens_views ON COMMIT DROP AS
SELECT c.oid, c.relname, pg_get_viewdef(c.oid) AS definition
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'v';

ALTER TABLE public.meter_reads_electric RENAME TO meter_reads_electric_unpartitioned;
ALTER TABLE public.meter_reads_electric_unpartitioned
    RENAME CONSTRAINT meter_reads_electric_pkey TO meter_reads_electric_unpartitioned_pkey;

CREATE TABLE public.meter_reads_electric (
    LIKE public.meter_reads_electric_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    CONSTRAINT meter_reads_electric_pkey PRIMARY KEY (tenant_id, read_at, meter_id)
) PARTITION BY RANGE (read_at);

CREATE TABLE public.meter_reads_electric_default
    PARTITION OF public.meter_reads_electric DEFAULT;

-- The partition of one day, created if missing (true when created); what the default
-- partition holds of that day moves into it. Called by the consumer before the first
-- insert of a day it has not seen (consumer/worker.py), and by the API's pass. One
-- creator at a time (an advisory lock); waits at most 1 s for the default partition's
-- lock (readers of the table hold it, and inserts of reads without a partition queue
-- behind the wait); the next pass tries again. ATTACH, not CREATE ... PARTITION OF: it
-- leaves the parent open to inserts and reads meanwhile.
CREATE FUNCTION public.gridlens_ensure_read_partition(p_day timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    day timestamptz := date_trunc('day', p_day, 'UTC');
    partition text := public.gridlens_read_partition(day);
    low timestamptz := day + interval '1 microsecond';
    high timestamptz := low + interval '24 hours';  -- a UTC day in any session time zone
BEGIN
    IF to_regclass('public.' || partition) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(7349827351);
    PERFORM set_config('lock_timeout', '1s', true);
    -- Rows to move: the whole table is locked first (a reader planned before the attach
    -- would miss them, gone from the default and in a partition it does not know yet).
    IF EXISTS (SELECT FROM public.meter_reads_electric_default
               WHERE read_at >= low AND read_at < high) THEN
        LOCK TABLE public.meter_reads_electric IN ACCESS EXCLUSIVE MODE;
    END IF;
    LOCK TABLE public.meter_reads_electric_default IN ACCESS EXCLUSIVE MODE;
    -- Looked up again after a table lock (which brings the catalog up to date): another
    -- process may have made it while this one waited.
    IF to_regclass('public.' || partition) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE public.%I (LIKE public.meter_reads_electric'
                   ' INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', partition);
    EXECUTE format('WITH moved AS (DELETE FROM public.meter_reads_electric_default'
                   ' WHERE read_at >= $1 AND read_at < $2 RETURNING *)'
                   ' INSERT INTO public.%I SELECT * FROM moved', partition) USING low, high;
    EXECUTE format('ALTER TABLE public.meter_reads_electric ATTACH PARTITION public.%I'
                   ' FOR VALUES FROM (%L) TO (%L)', partition, low, high);
    RETURN true;
END
$$;

-- The partitions of the days from p_first to p_last, and of every day the default
-- partition holds reads of; returns how many were created.
CREATE FUNCTION public.gridlens_ensure_read_partitions(p_first timestamptz, p_last timestamptz)
RETURNS integer LANGUAGE sql AS $$
    SELECT COUNT(*) FILTER (WHERE public.gridlens_ensure_read_partition(day))::integer
    FROM (SELECT generate_series(date_trunc('day', p_first, 'UTC'),
                                 date_trunc('day', p_last, 'UTC'), interval '24 hours') AS day
          UNION
          SELECT DISTINCT public.gridlens_read_day(read_at)
          FROM public.meter_reads_electric_default) AS days
$$;

-- Retention: one day's partition dropped with what was kept of its reads beside them, in
-- one transaction, so status stays exact (the rollups and the meters of what remains)
-- and the day's KPI features go with its reads. Returns the reads dropped (from the
-- rollups), or NULL when the day was gone already. DROP takes the table's lock for a
-- moment: it waits at most 1 s for it (inserts queue behind the wait).
CREATE INDEX meter_reads_rollup_read_at ON public.meter_reads_rollup (read_at);

CREATE FUNCTION public.gridlens_drop_read_day(p_day timestamptz) RETURNS bigint
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

-- The conversion: a partition for every day the old table holds and for the days around
-- now, then the rows, then the views.
SELECT public.gridlens_ensure_read_partitions(
    LEAST(MIN(public.gridlens_read_day(read_at)), now() - interval '24 hours'),
    GREATEST(MAX(public.gridlens_read_day(read_at)), now() + interval '168 hours'))
FROM public.meter_reads_electric_unpartitioned;
RESET lock_timeout;  -- set for the partitions' making; the copy holds its locks already

INSERT INTO public.meter_reads_electric SELECT * FROM public.meter_reads_electric_unpartitioned;

INSERT INTO public.tenant_meter_days (tenant_id, meter_id, day)
SELECT DISTINCT tenant_id, meter_id, public.gridlens_read_day(read_at)
FROM public.meter_reads_electric;

DROP TABLE public.meter_reads_electric_unpartitioned CASCADE;

DO $$
DECLARE
    view record;
BEGIN
    FOR view IN SELECT relname, definition FROM gridlens_views ORDER BY oid LOOP
        IF to_regclass('public.' || view.relname) IS NULL THEN
            EXECUTE format('CREATE VIEW public.%I AS %s', view.relname, view.definition);
        END IF;
    END LOOP;
END
$$;

-- Completeness from a time on: reads only the rollup rows of that time and the day before
-- it (the trailing day the expected meters come from), however long the history. The
-- view keeps its columns, over the function.
CREATE FUNCTION public.kpi_read_completeness_since(p_tenant_id text, p_since timestamptz)
RETURNS TABLE (read_at timestamptz, reads_received bigint, meters_expected bigint,
               completeness double precision)
LANGUAGE sql STABLE AS $$
    WITH per_interval AS (
        SELECT rollup.read_at, SUM(rollup.reads)::bigint AS reads_received
        FROM public.meter_reads_rollup AS rollup
        WHERE rollup.tenant_id = p_tenant_id AND rollup.read_at >= p_since - interval '1 day'
        GROUP BY rollup.read_at
    ), expected AS (
        SELECT per_interval.*,
               MAX(reads_received) OVER (ORDER BY per_interval.read_at
                                         RANGE BETWEEN INTERVAL '1 day' PRECEDING
                                         AND CURRENT ROW) AS meters_expected
        FROM per_interval
    )
    SELECT expected.read_at, reads_received, meters_expected,
           reads_received::double precision / NULLIF(meters_expected, 0)
    FROM expected
    WHERE expected.read_at >= p_since
$$;

CREATE OR REPLACE VIEW public.kpi_read_completeness AS
SELECT tenants.tenant_id, since.*
FROM (SELECT DISTINCT tenant_id FROM public.meter_reads_rollup) AS tenants
CROSS JOIN LATERAL public.kpi_read_completeness_since(tenants.tenant_id, '-infinity') AS since;
