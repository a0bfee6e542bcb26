-- Named queries, loaded once by gridlens.sqlfiles. A block runs from its
-- "-- name:" line to the next one.

-- name: insert_reads
-- One statement per job: the whole batch as binary arrays, unnested server-side.
-- Re-delivery is harmless: a read already stored is skipped (SPEC §5). The rows it did
-- add update the status rollups in the same statement, hence the same transaction, in a
-- row of the job's own meter set (0007); the meters are registered only by the job that
-- registers their meter set on the reads' day (0006, 0013), and for that day. A late batch
-- (a buffered outage's backlog, 0012) is stored marked late, and its lateness (stored time
-- − read time) counted in the rollup.
WITH new_reads AS (
    INSERT INTO public.meter_reads_electric
        (tenant_id, meter_id, feeder_id, read_at, interval_minutes, kwh, voltage, kwh_received,
         late)
    SELECT %(tenant_id)s, batch.meter_id, %(feeder_id)s, %(read_at)s, %(interval_minutes)s,
           batch.kwh, batch.voltage, batch.kwh_received, %(late)s
    FROM unnest(%(meter_ids)s::text[], %(kwh)s::float8[], %(voltage)s::float8[],
                %(kwh_received)s::float8[])
         AS batch (meter_id, kwh, voltage, kwh_received)
    ON CONFLICT (tenant_id, meter_id, read_at) DO NOTHING
    RETURNING meter_id, kwh, kwh_received
), new_set AS (
    INSERT INTO public.tenant_meter_set_days (tenant_id, day, meter_set)
    VALUES (%(tenant_id)s, public.gridlens_read_day(%(read_at)s), %(meter_set)s::uuid)
    ON CONFLICT (tenant_id, day, meter_set) DO NOTHING
    RETURNING meter_set
), new_meter_days AS (
    INSERT INTO public.tenant_meter_days (tenant_id, meter_id, day)
    SELECT %(tenant_id)s, meter_id, public.gridlens_read_day(%(read_at)s) FROM new_reads
    WHERE EXISTS (SELECT FROM new_set)
    ON CONFLICT (tenant_id, meter_id, day) DO NOTHING
), new_meters AS (
    INSERT INTO public.tenant_meters (tenant_id, meter_id, first_read_at)
    SELECT %(tenant_id)s, meter_id, %(read_at)s FROM new_reads
    WHERE EXISTS (SELECT FROM new_set)
    ON CONFLICT (tenant_id, meter_id) DO NOTHING
), counted AS (
    INSERT INTO public.meter_reads_rollup AS rollup
        (tenant_id, read_at, feeder_id, meter_set, reads, kwh, kwh_received, late_reads,
         late_seconds_max)
    SELECT %(tenant_id)s, %(read_at)s, %(feeder_id)s, %(meter_set)s::uuid, COUNT(*), SUM(kwh),
           SUM(kwh_received), CASE WHEN %(late)s THEN COUNT(*) ELSE 0 END,
           CASE WHEN %(late)s THEN EXTRACT(epoch FROM statement_timestamp() - %(read_at)s) END
    FROM new_reads
    HAVING COUNT(*) > 0
    ON CONFLICT (tenant_id, read_at, feeder_id, meter_set) DO UPDATE SET
        reads = rollup.reads + EXCLUDED.reads, kwh = rollup.kwh + EXCLUDED.kwh,
        kwh_received = rollup.kwh_received + EXCLUDED.kwh_received,
        late_reads = rollup.late_reads + EXCLUDED.late_reads,
        late_seconds_max = GREATEST(rollup.late_seconds_max, EXCLUDED.late_seconds_max)
)
SELECT COUNT(*) FROM new_reads

-- name: ping
SELECT 1

-- name: migrations_lock
-- Held until the migrating transaction ends, so concurrent starts apply each file once.
SELECT pg_advisory_xact_lock(7349827349)

-- name: migrations_table
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version    text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: migrations_applied
SELECT version, checksum FROM public.schema_migrations ORDER BY version

-- name: migrations_record
INSERT INTO public.schema_migrations (version, checksum) VALUES (%(version)s, %(checksum)s)

-- name: insert_event
INSERT INTO public.ami_events (tenant_id, event_type, feeder_id, starts_at, ends_at, fraction, params)
VALUES (%(tenant_id)s, %(event_type)s, %(feeder_id)s, %(starts_at)s, %(ends_at)s, %(fraction)s,
        %(params)s)
RETURNING event_id

-- name: list_events
SELECT event_id, tenant_id, event_type, feeder_id, starts_at, ends_at, fraction, params
FROM public.ami_events
WHERE tenant_id = %(tenant_id)s
ORDER BY event_id

-- name: active_events
-- The events in force for the read ending at read_at: its interval lies in the event's
-- window, (starts_at, ends_at] (the producer reads them at every publish). When a buffered
-- outage ended within the interval before, also every event its missed reads met: the
-- publish delivers them now, as they were read (producer/backlog.py).
WITH backlog AS (
    SELECT MIN(starts_at) AS since
    FROM public.ami_events
    WHERE tenant_id = %(tenant_id)s AND event_type = 'comms-outage'
      AND params @> '{"buffered": true}'
      AND ends_at < %(read_at)s AND ends_at >= %(read_at)s - %(interval_minutes)s * interval '1 minute'
)
SELECT event_id, tenant_id, event_type, feeder_id, starts_at, ends_at, fraction, params
FROM public.ami_events
WHERE tenant_id = %(tenant_id)s AND starts_at < %(read_at)s
  AND ends_at >= LEAST(%(read_at)s, (SELECT since FROM backlog))
ORDER BY event_id

-- name: delete_event
DELETE FROM public.ami_events WHERE event_id = %(event_id)s RETURNING event_id

-- name: tenant_status
-- COUNT(DISTINCT meter_id), COUNT(*), MAX(read_at), SUM(kwh), SUM(kwh_received) and the
-- reads stored late of the tenant's reads, from the rollups the consumer keeps
-- (sql/migrations/0003, 0011, 0012). Energy is rounded to the reads' resolution (0.1 Wh),
-- so sums taken in another order agree exactly. Last, not in the scan below: the longest
-- a late read took from its read time to being stored, in seconds.
SELECT (SELECT COUNT(*) FROM public.tenant_meters WHERE tenant_id = %(tenant_id)s),
       rolled.reads, rolled.latest, rolled.kwh, rolled.kwh_received, rolled.late_reads,
       rolled.late_seconds_max
FROM (SELECT COALESCE(SUM(reads), 0)::bigint AS reads, MAX(read_at) AS latest,
             round(COALESCE(SUM(kwh), 0)::numeric, 4) AS kwh,
             round(COALESCE(SUM(kwh_received), 0)::numeric, 4) AS kwh_received,
             COALESCE(SUM(late_reads), 0)::bigint AS late_reads,
             MAX(late_seconds_max) AS late_seconds_max
      FROM public.meter_reads_rollup WHERE tenant_id = %(tenant_id)s) AS rolled

-- name: tenant_status_scan
-- The same figures from the table itself: the definition the rollups must match.
SELECT COUNT(DISTINCT meter_id), COUNT(*), MAX(read_at),
       round(COALESCE(SUM(kwh), 0)::numeric, 4), round(COALESCE(SUM(kwh_received), 0)::numeric, 4),
       COUNT(*) FILTER (WHERE late)
FROM public.meter_reads_electric
WHERE tenant_id = %(tenant_id)s

-- name: rebuild_rollups
-- Recompute the rollups from meter_reads_electric (after rows were written or deleted
-- outside the consumer). Takes a lock that pauses inserts while it runs. The meter-set
-- registry starts again empty: the next job of each set registers its meters again.
LOCK TABLE public.meter_reads_electric IN SHARE MODE;
TRUNCATE public.tenant_meters, public.tenant_meter_days, public.tenant_meter_sets,
         public.tenant_meter_set_days, public.meter_reads_rollup;
INSERT INTO public.tenant_meters (tenant_id, meter_id, first_read_at)
SELECT tenant_id, meter_id, MIN(read_at) FROM public.meter_reads_electric
GROUP BY tenant_id, meter_id;
INSERT INTO public.tenant_meter_days (tenant_id, meter_id, day)
SELECT DISTINCT tenant_id, meter_id, public.gridlens_read_day(read_at)
FROM public.meter_reads_electric;
-- (How late the late reads were is not kept per row: late_seconds_max starts again empty.)
INSERT INTO public.meter_reads_rollup
    (tenant_id, read_at, feeder_id, reads, kwh, kwh_received, late_reads)
SELECT tenant_id, read_at, feeder_id, COUNT(*), SUM(kwh), SUM(kwh_received),
       COUNT(*) FILTER (WHERE late)
FROM public.meter_reads_electric
GROUP BY tenant_id, read_at, feeder_id

-- name: quickcheck_intervals
-- The tenant's latest intervals (newest first), from the ingest rollup.
SELECT DISTINCT read_at FROM public.meter_reads_rollup
WHERE tenant_id = %(tenant_id)s
ORDER BY read_at DESC
LIMIT %(intervals)s

-- name: quickcheck_feeder_load
-- kwh is the energy delivered, kwh_received the energy received; net = delivered − received.
SELECT feeder_id, meters_reporting, kwh, kwh_received, kwh - kwh_received AS kwh_net,
       voltage_mean, voltage_min
FROM public.kpi_feeder_load
WHERE tenant_id = %(tenant_id)s AND read_at = %(read_at)s
ORDER BY kwh DESC

-- name: quickcheck_voltage
SELECT feeder_id, reads, outside_range_a, outside_range_b, voltage_min, voltage_max
FROM public.kpi_voltage_anomalies
WHERE tenant_id = %(tenant_id)s AND read_at = %(read_at)s
ORDER BY outside_range_b DESC, outside_range_a DESC, voltage_min

-- name: quickcheck_completeness
SELECT read_at, reads_received, meters_expected, completeness
FROM public.kpi_read_completeness_since(%(tenant_id)s, %(since)s)
ORDER BY read_at DESC

-- name: insufficient_data
-- The day's meter-days with too few reads to judge (0009), least complete first.
SELECT meter_id, feeder_id, reads, completeness
FROM public.kpi_insufficient_data_on(%(tenant_id)s, %(day)s)

-- name: near_zero
-- The day's judged meter-days of near-zero use (0010: vacancy, not theft), lowest first.
SELECT meter_id, feeder_id, reads, mean_kw
FROM public.kpi_near_zero_on(%(tenant_id)s, %(day)s)

-- name: theft_suspects
-- The day's suspects, strongest first (verdicts stored with the day's features: 0010).
SELECT meter_id, feeder_id, own_ratio, peer_ratio, zero_reads, variation, peer_corr, reasons
FROM public.kpi_theft_suspects_on(%(tenant_id)s, %(day)s)
ORDER BY cardinality(reasons) DESC, peer_ratio NULLS LAST, meter_id

-- name: reset_session
-- Every setting back to the connection's start-up values (gridlens.connections' pool reset).
RESET ALL

-- name: statement_budget
-- A statement timeout for the rest of the current transaction.
SELECT set_config('statement_timeout', %(milliseconds)s, true)

-- name: refresh_budget
-- A day's refresh: its statement timeout; no nested loops, whatever the statistics say (a
-- new day's partition is not analyzed yet: planned for a few rows, its refresh joined
-- 25,000 meters to 25,000 in nested loops, minutes instead of seconds); and no JIT
-- compilation (about 0.9 s of compiling at 25,000 meters, for nothing in return).
SELECT set_config('statement_timeout', %(milliseconds)s, true),
       set_config('enable_nestloop', 'off', true), set_config('jit', 'off', true)

-- name: stale_days
-- Days (UTC) whose reads changed since their features were computed, and every later day
-- of the same tenant (a day's verdict starts from the baseline of the days before it),
-- oldest first.
WITH current AS (
    SELECT tenant_id, date_trunc('day', read_at - interval '1 microsecond', 'UTC') AS day,
           SUM(reads)::bigint AS reads
    FROM public.meter_reads_rollup
    GROUP BY 1, 2
), first_changed AS (
    SELECT current.tenant_id, MIN(current.day) AS day
    FROM current
    LEFT JOIN public.kpi_refreshed_days AS done USING (tenant_id, day)
    WHERE done.reads IS DISTINCT FROM current.reads
    GROUP BY current.tenant_id
)
SELECT current.tenant_id, current.day, current.reads
FROM current
JOIN first_changed ON first_changed.tenant_id = current.tenant_id
                  AND current.day >= first_changed.day
ORDER BY current.day, current.tenant_id

-- name: refresh_meter_days
-- The features and verdict of one tenant's day (reads ending in (day, day + 1 day]), from
-- its rows and the baseline its meters carried out of their latest earlier day
-- (sql/migrations/0010, 0012).
WITH day_reads AS (
    SELECT feeder_id, meter_id, read_at, kwh, kwh_received, interval_minutes
    FROM public.meter_reads_electric
    WHERE tenant_id = %(tenant_id)s
      AND read_at > %(day)s AND read_at <= %(day)s + interval '24 hours'  -- in any time zone
), peers AS (
    -- Per feeder and interval: the mean read, and the most any of its meters received.
    SELECT feeder_id, read_at, AVG(kwh) AS feeder_kwh, MAX(kwh_received) AS feeder_received
    FROM day_reads
    GROUP BY feeder_id, read_at
), reads AS (
    SELECT feeder_id, meter_id, kwh, kwh_received, interval_minutes, feeder_kwh, feeder_received,
           EXTRACT(hour FROM (read_at - interval_minutes * interval '30 seconds')
                             AT TIME ZONE 'UTC')::integer AS hour
    FROM day_reads JOIN peers USING (feeder_id, read_at)
), feeders AS (
    -- The feeder each meter reported from most that day (the first by id on a tie).
    SELECT DISTINCT ON (meter_id) meter_id, feeder_id
    FROM (SELECT meter_id, feeder_id, COUNT(*) AS reads FROM reads GROUP BY 1, 2) AS counted
    ORDER BY meter_id, reads DESC, feeder_id
), features AS (
    -- One row per meter-day (hash-aggregated: no sort of the day's reads).
    SELECT feeders.feeder_id, per_meter.*
    FROM (SELECT meter_id, COUNT(*) AS reads, MIN(interval_minutes) AS interval_minutes,
                 AVG(kwh) AS kwh_per_read,
                 COUNT(*) FILTER (WHERE kwh = 0 AND kwh_received = 0) AS zero_reads,
                 STDDEV_POP(kwh) / NULLIF(AVG(kwh), 0) AS variation,
                 CORR(kwh, feeder_kwh) AS peer_corr, BOOL_OR(kwh_received > 0) AS exported
          FROM reads
          GROUP BY meter_id) AS per_meter
    JOIN feeders USING (meter_id)
), latest AS (
    SELECT DISTINCT ON (earlier.meter_id) earlier.*
    FROM public.kpi_meter_days AS earlier
    WHERE earlier.tenant_id = %(tenant_id)s
      AND earlier.day >= %(day)s - interval '192 hours' AND earlier.day < %(day)s
    ORDER BY earlier.meter_id, earlier.day DESC
), hourly AS (
    SELECT meter_id, hour, SUM(kwh) AS kwh, SUM(feeder_kwh) AS peer,
           BOOL_OR(feeder_received > 0) AS sunlit
    FROM reads
    GROUP BY meter_id, hour
), hours AS (
    -- A meter with rooftop PV is compared over the hours without sun on its feeder only:
    -- in daylight what it draws depends on the weather, not on what it uses.
    SELECT features.meter_id,
           array_agg(CASE WHEN NOT (features.exported OR COALESCE(latest.generator, false))
                               OR NOT hourly.sunlit THEN hourly.kwh END ORDER BY slot.hour)
               AS hour_kwh,
           array_agg(hourly.peer ORDER BY slot.hour) AS hour_peer,
           features.exported OR COALESCE(latest.generator, false) AS generator
    FROM features
    LEFT JOIN latest USING (meter_id)
    CROSS JOIN generate_series(0, 23) AS slot(hour)
    LEFT JOIN hourly ON hourly.meter_id = features.meter_id AND hourly.hour = slot.hour
    GROUP BY features.meter_id, features.exported, latest.generator
), carried AS (
    SELECT latest.meter_id,
           public.kpi_next_baseline(latest.baseline, latest.baseline_days, clean.is_clean,
                                    latest.hour_kwh, latest.hour_peer) AS baseline,
           latest.baseline_days + clean.is_clean::integer AS baseline_days
    FROM latest
    -- Clean: enough reads, no reason to suspect it, and not near one either (a theft just
    -- short of a threshold must not teach the baseline its new level or shape).
    CROSS JOIN LATERAL (SELECT latest.completeness >= 0.5 AND NOT latest.near_zero
                               AND cardinality(latest.reasons) = 0
                               AND COALESCE(latest.peer_ratio, 1) >= 0.9
                               AND COALESCE(latest.own_corr, 1) >= 0.8
                               AND COALESCE(latest.peer_rank, 1) >= 0.55 AS is_clean) AS clean
), compared AS (
    SELECT features.*, hours.hour_kwh, hours.hour_peer, hours.generator, carried.baseline,
           COALESCE(carried.baseline_days, 0) AS baseline_days, versus.own_ratio,
           versus.own_corr, versus.own_error,
           public.kpi_rank_corr(hours.hour_kwh, hours.hour_peer) AS peer_rank,
           features.reads * features.interval_minutes >= 0.8 * 1440 AS judged
    FROM features
    JOIN hours USING (meter_id)
    LEFT JOIN carried USING (meter_id)
    -- A baseline of fewer than 192 reads (2 days at 15 minutes) is too noisy to judge by.
    CROSS JOIN LATERAL public.kpi_compare_hours(
        hours.hour_kwh, hours.hour_peer,
        CASE WHEN carried.baseline_days * 1440 / features.interval_minutes >= 192
             THEN carried.baseline END, carried.baseline_days) AS versus
), feeder_medians AS (
    SELECT feeder_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY own_ratio) AS own_ratio,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY own_error) AS own_error
    FROM compared
    WHERE judged AND own_ratio IS NOT NULL
    GROUP BY feeder_id
), verdicts AS (
    SELECT compared.*, peers.peer_ratio,
           compared.kwh_per_read * 60.0 / compared.interval_minutes < 0.1
               AND COALESCE(compared.peer_corr, 0) < 0.3 AS near_zero,
           public.kpi_theft_reasons(peers.peer_ratio,
                                    GREATEST(compared.own_error, feeder_medians.own_error),
                                    compared.zero_reads::integer,
                                    compared.interval_minutes, compared.variation,
                                    compared.own_corr, compared.peer_rank) AS reasons
    FROM compared
    LEFT JOIN feeder_medians USING (feeder_id)
    CROSS JOIN LATERAL (SELECT compared.own_ratio / NULLIF(feeder_medians.own_ratio, 0)
                               AS peer_ratio) AS peers
), stored AS (
    INSERT INTO public.kpi_meter_day_features AS f
        (tenant_id, day, meter_id, feeder_id, reads, interval_minutes, kwh_per_read,
         zero_reads, variation, peer_corr, hour_kwh, hour_peer, baseline,
         baseline_days, own_ratio, own_corr, own_error, peer_ratio, near_zero, reasons,
         generator, peer_rank)
    SELECT %(tenant_id)s, %(day)s, meter_id, feeder_id, reads, interval_minutes, kwh_per_read,
           zero_reads, variation, peer_corr, hour_kwh, hour_peer, baseline,
           baseline_days, own_ratio, own_corr, own_error, peer_ratio, near_zero, reasons,
           generator, peer_rank
    FROM verdicts
    ON CONFLICT (tenant_id, day, meter_id) DO UPDATE SET
        feeder_id = EXCLUDED.feeder_id, reads = EXCLUDED.reads,
        interval_minutes = EXCLUDED.interval_minutes, kwh_per_read = EXCLUDED.kwh_per_read,
        zero_reads = EXCLUDED.zero_reads, variation = EXCLUDED.variation,
        peer_corr = EXCLUDED.peer_corr,
        hour_kwh = EXCLUDED.hour_kwh, hour_peer = EXCLUDED.hour_peer,
        baseline = EXCLUDED.baseline, baseline_days = EXCLUDED.baseline_days,
        own_ratio = EXCLUDED.own_ratio, own_corr = EXCLUDED.own_corr,
        own_error = EXCLUDED.own_error,
        peer_ratio = EXCLUDED.peer_ratio, near_zero = EXCLUDED.near_zero,
        reasons = EXCLUDED.reasons, generator = EXCLUDED.generator,
        peer_rank = EXCLUDED.peer_rank
)
INSERT INTO public.kpi_refreshed_days AS done (tenant_id, day, reads)
VALUES (%(tenant_id)s, %(day)s, %(reads)s)
ON CONFLICT (tenant_id, day) DO UPDATE SET reads = EXCLUDED.reads, refreshed_at = now()

-- name: analyze_features
-- Statistics for the features after a pass over many days: on a freshly filled table the
-- planner expects a row a day, and a day's suspects took seconds instead of milliseconds.
ANALYZE public.kpi_meter_day_features

-- name: refresh_lock
-- One refresher at a time, across every API process; held by the session through its pass
-- (which commits day by day), released by refresh_unlock or when the session ends.
SELECT pg_try_advisory_lock(7349827350)

-- name: refresh_unlock
SELECT pg_advisory_unlock(7349827350)

-- name: theft_refreshed_at
SELECT refreshed_at FROM public.kpi_refreshed_days WHERE tenant_id = %(tenant_id)s AND day = %(day)s

-- name: missing_read_partitions
-- The days without a read partition (sql/migrations/0013): from yesterday to days_ahead
-- days after today, and every day the default partition holds reads of; oldest first.
SELECT day
FROM (SELECT generate_series(date_trunc('day', now() - interval '24 hours', 'UTC'),
                             date_trunc('day', now() + %(days_ahead)s * interval '24 hours', 'UTC'),
                             interval '24 hours') AS day
      UNION
      SELECT DISTINCT public.gridlens_read_day(read_at)
      FROM public.meter_reads_electric_default) AS days
WHERE to_regclass('public.' || public.gridlens_read_partition(day)) IS NULL
ORDER BY day

-- name: ensure_read_partition
-- The partition of the day read_day lies in, made if missing (moving its reads out of the
-- default partition); true when made.
SELECT public.gridlens_ensure_read_partition(%(day)s)

-- name: expired_read_days
-- The days (UTC) whose reads all lie more than keep_days days back, oldest first: their
-- partition (NULL if none, e.g. rows left in the default partition) and the reads they
-- hold, from the rollups.
WITH window_start AS (
    SELECT now() - %(keep_days)s * interval '24 hours' AS at
), partitions AS (
    SELECT (to_date(right(child.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC') AS day,
           child.relname::text AS partition
    FROM pg_inherits AS link
    JOIN pg_class AS child ON child.oid = link.inhrelid
    WHERE link.inhparent = 'public.meter_reads_electric'::regclass
      AND child.relname ~ '^meter_reads_electric_p[0-9]{8}$'
), counted AS (
    SELECT public.gridlens_read_day(read_at) AS day, SUM(reads)::bigint AS reads
    FROM public.meter_reads_rollup
    WHERE read_at <= (SELECT at FROM window_start)
    GROUP BY 1
)
SELECT day, partitions.partition, COALESCE(counted.reads, 0)
FROM partitions FULL JOIN counted USING (day)
WHERE day + interval '24 hours' <= (SELECT at FROM window_start)
ORDER BY day

-- name: drop_read_day
-- One day's partition and what was kept of its reads beside it (0013); returns its reads.
SELECT public.gridlens_drop_read_day(%(day)s)

-- name: disk_bytes
-- What the reads take on disk: the table with its indexes and TOAST, and the rollups
-- and meter registry the insert keeps beside it (bench/kpi.py, for sizing).
SELECT (SELECT SUM(pg_total_relation_size(relid))
        FROM pg_partition_tree('public.meter_reads_electric'))
     + pg_total_relation_size('public.meter_reads_rollup')
     + pg_total_relation_size('public.tenant_meter_days')
     + pg_total_relation_size('public.tenant_meters')
     + pg_total_relation_size('public.tenant_meter_set_days')
