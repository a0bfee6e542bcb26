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

-- name: tenants
-- The tenants with reads, in order, at most %(limit)s: one index probe of tenant_meters'
-- primary key per tenant (a loose index scan), not a scan of their meters.
WITH RECURSIVE tenant AS (
    (SELECT tenant_id FROM public.tenant_meters ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT next.tenant_id FROM public.tenant_meters AS next
            WHERE next.tenant_id > tenant.tenant_id ORDER BY next.tenant_id LIMIT 1)
    FROM tenant WHERE tenant.tenant_id IS NOT NULL
)
SELECT tenant_id FROM tenant WHERE tenant_id IS NOT NULL LIMIT %(limit)s

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
-- A day's refresh: its statement timeout; memory to hash a day's meters without spilling;
-- no nested loops, whatever the statistics say (a new day's partition is not analyzed
-- yet: planned for a few rows, its refresh joined 25,000 meters to 25,000 in nested loops,
-- minutes instead of seconds); and no JIT compilation (about 0.9 s of compiling at 25,000
-- meters, for nothing in return).
SELECT set_config('statement_timeout', %(milliseconds)s, true),
       set_config('work_mem', '64MB', true),
       set_config('enable_nestloop', 'off', true), set_config('jit', 'off', true)

-- name: stale_days
-- Days (UTC) whose reads changed since their features were computed, or that are over
-- and not judged yet, and every later day of the same tenant (a day's verdict starts from
-- the baseline of the days before it), oldest first; with whether the day's reads changed
-- and whether it is over (sql/migrations/0014).
WITH current AS (
    SELECT tenant_id, date_trunc('day', read_at - interval '1 microsecond', 'UTC') AS day,
           SUM(reads)::bigint AS reads
    FROM public.meter_reads_rollup
    GROUP BY 1, 2
), compared AS (
    SELECT current.*, done.reads IS DISTINCT FROM current.reads AS changed,
           current.day + interval '24 hours' <= now() AS over,
           COALESCE(done.judged, false) AS judged
    FROM current
    LEFT JOIN public.kpi_refreshed_days AS done USING (tenant_id, day)
), first_changed AS (
    SELECT tenant_id, MIN(day) AS day
    FROM compared
    WHERE changed OR (over AND NOT judged)
    GROUP BY tenant_id
)
SELECT compared.tenant_id, compared.day, compared.reads, compared.changed, compared.over,
       compared.judged
FROM compared
JOIN first_changed ON first_changed.tenant_id = compared.tenant_id
                  AND compared.day >= first_changed.day
ORDER BY compared.day, compared.tenant_id

-- name: changed_hours
-- Every hour (0-23) of one tenant-day with reads now or when its hour rows were computed:
-- its read count now (0: none left), and whether that differs from then.
WITH current AS (
    SELECT EXTRACT(hour FROM (read_at - interval '1 microsecond') AT TIME ZONE 'UTC')::smallint
               AS hour,
           SUM(reads)::bigint AS reads
    FROM public.meter_reads_rollup
    WHERE tenant_id = %(tenant_id)s
      AND read_at > %(day)s AND read_at <= %(day)s + interval '24 hours'
    GROUP BY 1
), done AS (
    SELECT hour, reads FROM public.kpi_refreshed_hours
    WHERE tenant_id = %(tenant_id)s AND day = %(day)s
)
SELECT hour, COALESCE(current.reads, 0) AS reads, current.reads IS DISTINCT FROM done.reads
FROM current FULL JOIN done USING (hour)
ORDER BY hour

-- name: ensure_hours_partition
SELECT public.kpi_ensure_hours_partition(%(day)s)

-- name: clear_meter_hours
DELETE FROM public.kpi_meter_hours
WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND hour BETWEEN %(first)s AND %(last)s

-- name: refresh_meter_hours
-- One tenant-day's hour rows of the hours first to last, from their reads: per meter and feeder,
-- the sums the day's features are made of (sql/migrations/0014), each read beside its
-- feeder's mean read and most received at the same read time. kWh sums are rounded to the
-- reads' resolution (0.1 Wh), so an hour's kWh is the same whatever order it was added in:
-- two hours of equal kWh rank as a tie in every pass.
INSERT INTO public.kpi_meter_hours
    (tenant_id, day, hour, meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares,
     peer_kwh, peer_squares, kwh_peer, zero_reads, exported, sunlit)
WITH hour_reads AS (
    SELECT feeder_id, meter_id, read_at, kwh, kwh_received, interval_minutes,
           EXTRACT(hour FROM (read_at - interval '1 microsecond') AT TIME ZONE 'UTC')::smallint
               AS hour
    FROM public.meter_reads_electric
    WHERE tenant_id = %(tenant_id)s
      AND read_at > %(day)s + %(first)s * interval '1 hour'
      AND read_at <= %(day)s + (%(last)s + 1) * interval '1 hour'
), peers AS (
    SELECT feeder_id, read_at, AVG(kwh) AS peer_kwh, MAX(kwh_received) AS peer_received
    FROM hour_reads
    GROUP BY feeder_id, read_at
)
SELECT %(tenant_id)s, %(day)s, hour, meter_id, feeder_id, COUNT(*), MIN(interval_minutes),
       round(SUM(kwh)::numeric, 4)::double precision, SUM(kwh * kwh), SUM(peer_kwh), SUM(peer_kwh * peer_kwh), SUM(kwh * peer_kwh),
       COUNT(*) FILTER (WHERE kwh = 0 AND kwh_received = 0), BOOL_OR(kwh_received > 0),
       BOOL_OR(peer_received > 0)
FROM hour_reads JOIN peers USING (feeder_id, read_at)
GROUP BY hour, meter_id, feeder_id

-- name: record_hours
-- The read count of each hour recomputed (an hour without reads is forgotten).
WITH hours AS (
    SELECT * FROM unnest(%(hours)s::smallint[], %(reads)s::bigint[]) AS counted(hour, reads)
), gone AS (
    DELETE FROM public.kpi_refreshed_hours
    WHERE tenant_id = %(tenant_id)s AND day = %(day)s
      AND hour IN (SELECT hour FROM hours WHERE reads = 0)
)
INSERT INTO public.kpi_refreshed_hours AS done (tenant_id, day, hour, reads)
SELECT %(tenant_id)s, %(day)s, hour, reads FROM hours WHERE reads > 0
ON CONFLICT (tenant_id, day, hour) DO UPDATE SET reads = EXCLUDED.reads

-- name: forget_day_ahead
-- Hours 0-22 of a tenant-day added up ahead, gone when any of them is recomputed.
DELETE FROM public.kpi_meter_day_ahead
WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND %(first)s <= 22

-- name: add_up_day_ahead
-- Hours 0-22 of a tenant-day added up per meter and feeder (sql/migrations/0016), once it
-- has reads of 23:00 or later (hour 22's last interval, whatever the interval length: an
-- hourly fleet's last hour has only the read of 24:00, after the day is over); nothing when
-- they are added up already. The hourly lists come out of one aggregate step, so they hold
-- the hours in one order; NaN fills them to 24.
INSERT INTO public.kpi_meter_day_ahead
    (tenant_id, day, meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares,
     peer_kwh, peer_squares, kwh_peer, zero_reads, exported, hours_reads, hours, hour_kwh,
     hour_peer, hour_sunlit)
SELECT %(tenant_id)s, %(day)s, meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares,
       peer_kwh, peer_squares, kwh_peer, zero_reads, exported,
       (SELECT SUM(reads) FROM public.kpi_refreshed_hours
        WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND hour <= 22),
       hours || filler, hour_kwh || filler, hour_peer || filler, hour_sunlit || filler
FROM (SELECT meter_id, feeder_id, SUM(reads) AS reads, MIN(interval_minutes) AS interval_minutes,
             SUM(kwh) AS kwh, SUM(kwh_squares) AS kwh_squares, SUM(peer_kwh) AS peer_kwh,
             SUM(peer_squares) AS peer_squares, SUM(kwh_peer) AS kwh_peer,
             SUM(zero_reads) AS zero_reads, BOOL_OR(exported) AS exported,
             array_agg(hour::double precision) AS hours, array_agg(kwh) AS hour_kwh,
             array_agg(peer_kwh) AS hour_peer,
             array_agg(sunlit::integer::double precision) AS hour_sunlit,
             array_fill('NaN'::double precision, ARRAY[24 - COUNT(*)::integer]) AS filler
      FROM public.kpi_meter_hours
      WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND hour <= 22
        AND EXISTS (SELECT FROM public.meter_reads_rollup
                    WHERE tenant_id = %(tenant_id)s
                      AND read_at >= %(day)s + interval '23 hours'
                      AND read_at <= %(day)s + interval '24 hours')
        AND NOT EXISTS (SELECT FROM public.kpi_meter_day_ahead
                        WHERE tenant_id = %(tenant_id)s AND day = %(day)s)
      GROUP BY meter_id, feeder_id) AS added

-- name: day_added_up_ahead
-- The last hour added up ahead of: 22 (kpi_meter_day_ahead holds hours 0-22 of the reads
-- they hold now), or -1.
SELECT CASE WHEN (SELECT hours_reads FROM public.kpi_meter_day_ahead
                  WHERE tenant_id = %(tenant_id)s AND day = %(day)s LIMIT 1)
                 = (SELECT SUM(reads) FROM public.kpi_refreshed_hours
                    WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND hour <= 22)
            THEN 22 ELSE -1 END

-- name: day_features
-- One tenant-day's features, from its hour rows, for its verdict (api/kpi_judge.py), as
-- one row of arrays: per meter, in meter_id order, a key (a 64-bit hash of its id, seeded)
-- and the counts and sums added up (variation and peer_corr from the sums, as STDDEV_POP
-- and CORR would give them from the reads; a spread within rounding of nothing is none)
-- and the feeder it reported from most (the first by id on a tie); then per hour row, in
-- no order, its meter's key, the hour, the kWh, the peers' kWh and whether the feeder
-- exported (a meter that moved feeder within an hour has two rows of it); then the same
-- of hours 0-22 as added up ahead (kpi_meter_day_ahead), as rows of 24 per meter and
-- feeder. The keys put the hours at their meters' places without joining the day's
-- 600,000 hour rows to its 25,000 meters (0.2 s at 25,000 meters); two meters of one key
-- are seen there, and the query asked again with another seed. The hours are those after
-- %(after)s (-1: all of them) and, when %(after)s is 22, hours 0-22 as added up ahead.
WITH hours AS NOT MATERIALIZED (
    SELECT * FROM public.kpi_meter_hours WHERE tenant_id = %(tenant_id)s AND day = %(day)s
), added AS NOT MATERIALIZED (
    SELECT meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares, peer_kwh,
           peer_squares, kwh_peer, zero_reads, exported
    FROM public.kpi_meter_day_ahead
    WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND %(after)s = 22
    UNION ALL
    SELECT meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares, peer_kwh,
           peer_squares, kwh_peer, zero_reads, exported
    FROM hours
    WHERE hour > %(after)s
), sums AS (
    SELECT meter_id, SUM(reads) AS reads, MIN(interval_minutes) AS interval_minutes,
           SUM(kwh) AS kwh, SUM(kwh_squares) AS kwh_squares, SUM(peer_kwh) AS peer_kwh,
           SUM(peer_squares) AS peer_squares, SUM(kwh_peer) AS kwh_peer,
           SUM(zero_reads) AS zero_reads, BOOL_OR(exported) AS exported,
           MIN(feeder_id) AS feeder_id, MAX(feeder_id) <> MIN(feeder_id) AS moved
    FROM added
    GROUP BY meter_id
), spread AS (
    SELECT sums.*, kwh / reads AS kwh_per_read,
           GREATEST(reads * kwh_squares - kwh * kwh, 0) AS kwh_spread,
           GREATEST(reads * peer_squares - peer_kwh * peer_kwh, 0) AS peer_spread,
           reads * kwh_peer - kwh * peer_kwh AS co_spread
    FROM sums
), moved AS (
    -- A meter that reported from more than one feeder that day: the one it did most.
    SELECT DISTINCT ON (meter_id) meter_id, feeder_id
    FROM (SELECT meter_id, feeder_id, SUM(reads) AS reads
          FROM added
          WHERE meter_id IN (SELECT meter_id FROM sums WHERE moved)
          GROUP BY 1, 2) AS counted
    ORDER BY meter_id, reads DESC, feeder_id
), meters AS (
    SELECT spread.*, COALESCE(moved.feeder_id, spread.feeder_id) AS home,
           sqrt(kwh_spread) / reads / NULLIF(kwh_per_read, 0) AS variation,
           CASE WHEN kwh_spread > 1e-12 * reads * kwh_squares
                     AND peer_spread > 1e-12 * reads * peer_squares
                THEN GREATEST(LEAST(co_spread / sqrt(kwh_spread * peer_spread), 1), -1)
           END AS peer_corr
    FROM spread
    LEFT JOIN moved USING (meter_id)
), per_meter AS (
    SELECT array_agg(meter_id) AS meter_ids, array_agg(home) AS feeder_ids,
           array_agg(hashtextextended(meter_id, %(seed)s)) AS keys,
           array_agg(reads::double precision) AS reads,
           array_agg(interval_minutes::double precision) AS interval_minutes,
           array_agg(COALESCE(kwh_per_read, 'NaN')) AS kwh_per_read,
           array_agg(zero_reads::double precision) AS zero_reads,
           array_agg(COALESCE(variation, 'NaN')) AS variation,
           array_agg(COALESCE(peer_corr, 'NaN')) AS peer_corr,
           array_agg(exported::integer::double precision) AS exported
    FROM (SELECT * FROM meters ORDER BY meter_id) AS ordered
), per_hour AS (
    SELECT array_agg(hashtextextended(meter_id, %(seed)s)) AS keys,
           array_agg(hour::double precision) AS hours, array_agg(kwh) AS kwh,
           array_agg(peer_kwh) AS peer, array_agg(sunlit::integer::double precision) AS sunlit
    FROM hours
    WHERE hour > %(after)s
), per_ahead AS (
    SELECT array_agg(hashtextextended(meter_id, %(seed)s)) AS keys, array_agg(hours) AS hours,
           array_agg(hour_kwh) AS kwh, array_agg(hour_peer) AS peer,
           array_agg(hour_sunlit) AS sunlit
    FROM public.kpi_meter_day_ahead
    WHERE tenant_id = %(tenant_id)s AND day = %(day)s AND %(after)s = 22
)
SELECT * FROM per_meter, per_hour, per_ahead

-- name: stored_day
-- One tenant-day's features as stored (a day judged again: an earlier day's verdict
-- changed), in day_features' shape but with each meter's 24 hours as a row of the hour
-- arrays. NaN for NULL.
WITH ordered AS (
    SELECT *, array_fill('NaN'::double precision, ARRAY[24]) AS none
    FROM public.kpi_meter_day_features
    WHERE tenant_id = %(tenant_id)s AND day = %(day)s
    ORDER BY meter_id
)
SELECT array_agg(meter_id), array_agg(feeder_id), array_agg(reads::double precision),
       array_agg(interval_minutes::double precision), array_agg(COALESCE(kwh_per_read, 'NaN')),
       array_agg(zero_reads::double precision), array_agg(COALESCE(variation, 'NaN')),
       array_agg(COALESCE(peer_corr, 'NaN')), array_agg(exported::integer::double precision),
       array_agg(array_replace(COALESCE(hour_metered, none), NULL, 'NaN')),
       array_agg(array_replace(COALESCE(hour_peer, none), NULL, 'NaN')),
       array_agg(array_replace(COALESCE(hour_sunlit::integer[]::double precision[], none),
                               NULL, 'NaN'))
FROM ordered

-- name: earlier_days
-- What each meter's verdict starts from: its latest earlier day within 8 days, for the
-- meters that have one, by their place in the meter_ids given, as one row of arrays. The
-- day before holds it for most (one range of the primary key); a meter missing there is
-- looked up in the 7 days before that (7 probes of the key). NaN for NULL.
WITH meters AS (
    SELECT * FROM unnest(%(meter_ids)s::text[]) WITH ORDINALITY AS given(meter_id, place)
), missing AS (
    SELECT * FROM meters
    WHERE NOT EXISTS (
        SELECT FROM public.kpi_meter_day_features AS days
        WHERE days.tenant_id = %(tenant_id)s AND days.day = %(day)s - interval '24 hours'
          AND days.meter_id = meters.meter_id)
), found AS (
    SELECT meters.place, days.*
    FROM meters
    JOIN public.kpi_meter_days AS days
      ON days.tenant_id = %(tenant_id)s AND days.day = %(day)s - interval '24 hours'
     AND days.meter_id = meters.meter_id
    UNION ALL
    SELECT missing.place, earlier.*
    FROM missing
    CROSS JOIN LATERAL (
        SELECT * FROM public.kpi_meter_days AS days
        WHERE days.tenant_id = %(tenant_id)s AND days.meter_id = missing.meter_id
          AND days.day = ANY (ARRAY(SELECT %(day)s - back * interval '24 hours'
                                    FROM generate_series(2, 8) AS back))
        ORDER BY days.day DESC
        LIMIT 1
    ) AS earlier
), rows AS (
    SELECT found.*, array_fill('NaN'::double precision, ARRAY[24]) AS none FROM found
)
SELECT array_agg(place::double precision),
       array_agg(array_replace(COALESCE(baseline, none), NULL, 'NaN')),
       array_agg(baseline_days::double precision),
       array_agg(generator::integer::double precision), array_agg(completeness),
       array_agg(near_zero::integer::double precision),
       array_agg((cardinality(reasons) > 0)::integer::double precision),
       array_agg(COALESCE(peer_ratio, 'NaN')), array_agg(COALESCE(own_corr, 'NaN')),
       array_agg(COALESCE(peer_rank, 'NaN')),
       array_agg(array_replace(COALESCE(hour_kwh, none), NULL, 'NaN')),
       array_agg(array_replace(COALESCE(hour_peer, none), NULL, 'NaN'))
FROM rows

-- name: store_days
-- One tenant-day's features and verdicts, meter by meter, written once (sql/migrations/
-- 0014): NaN back to NULL, a meter's 24 hours sliced out of the flattened hour arrays, a
-- baseline of no hour none, reasons comma-separated.
INSERT INTO public.kpi_meter_day_features AS f
    (tenant_id, day, meter_id, feeder_id, reads, interval_minutes, kwh_per_read, zero_reads,
     variation, peer_corr, exported, hour_metered, hour_peer, hour_sunlit, hour_kwh, baseline,
     baseline_days, own_ratio, own_corr, own_error, peer_ratio, peer_rank, near_zero,
     generator, reasons)
SELECT %(tenant_id)s, %(day)s, d.meter_id, d.feeder_id, d.reads::integer,
       d.interval_minutes::smallint, NULLIF(d.kwh_per_read, 'NaN'), d.zero_reads::integer,
       NULLIF(d.variation, 'NaN'), NULLIF(d.peer_corr, 'NaN'), d.exported = 1,
       array_replace((%(metered)s::double precision[])[hours.first : hours.last], 'NaN', NULL),
       array_replace((%(peer)s::double precision[])[hours.first : hours.last], 'NaN', NULL),
       array_replace((%(sunlit)s::double precision[])[hours.first : hours.last], 'NaN', NULL)
           ::integer[]::boolean[],
       array_replace((%(hour_kwh)s::double precision[])[hours.first : hours.last], 'NaN', NULL),
       NULLIF(array_replace((%(baseline)s::double precision[])[hours.first : hours.last],
                            'NaN', NULL),
              array_fill(NULL::double precision, ARRAY[24])),
       d.baseline_days::integer, NULLIF(d.own_ratio, 'NaN'), NULLIF(d.own_corr, 'NaN'),
       NULLIF(d.own_error, 'NaN'), NULLIF(d.peer_ratio, 'NaN'), NULLIF(d.peer_rank, 'NaN'),
       d.near_zero = 1, d.generator = 1, string_to_array(d.reasons, ',')
FROM unnest(%(meter_ids)s::text[], %(feeder_ids)s::text[], %(reads)s::double precision[],
            %(interval_minutes)s::double precision[], %(kwh_per_read)s::double precision[],
            %(zero_reads)s::double precision[], %(variation)s::double precision[],
            %(peer_corr)s::double precision[], %(exported)s::double precision[],
            %(baseline_days)s::double precision[], %(own_ratio)s::double precision[],
            %(own_corr)s::double precision[], %(own_error)s::double precision[],
            %(peer_ratio)s::double precision[], %(peer_rank)s::double precision[],
            %(near_zero)s::double precision[], %(generator)s::double precision[],
            %(reasons)s::text[])
     WITH ORDINALITY AS d(meter_id, feeder_id, reads, interval_minutes, kwh_per_read,
                          zero_reads, variation, peer_corr, exported, baseline_days,
                          own_ratio, own_corr, own_error, peer_ratio, peer_rank, near_zero,
                          generator, reasons, place)
CROSS JOIN LATERAL (SELECT d.place * 24 - 23 AS first, d.place * 24 AS last) AS hours
ON CONFLICT (tenant_id, day, meter_id) DO UPDATE SET
    feeder_id = EXCLUDED.feeder_id, reads = EXCLUDED.reads,
    interval_minutes = EXCLUDED.interval_minutes, kwh_per_read = EXCLUDED.kwh_per_read,
    zero_reads = EXCLUDED.zero_reads, variation = EXCLUDED.variation,
    peer_corr = EXCLUDED.peer_corr, exported = EXCLUDED.exported,
    hour_metered = EXCLUDED.hour_metered, hour_peer = EXCLUDED.hour_peer,
    hour_sunlit = EXCLUDED.hour_sunlit, hour_kwh = EXCLUDED.hour_kwh,
    baseline = EXCLUDED.baseline, baseline_days = EXCLUDED.baseline_days,
    own_ratio = EXCLUDED.own_ratio, own_corr = EXCLUDED.own_corr,
    own_error = EXCLUDED.own_error, peer_ratio = EXCLUDED.peer_ratio,
    peer_rank = EXCLUDED.peer_rank, near_zero = EXCLUDED.near_zero,
    generator = EXCLUDED.generator, reasons = EXCLUDED.reasons

-- name: record_day
INSERT INTO public.kpi_refreshed_days AS done (tenant_id, day, reads, judged)
VALUES (%(tenant_id)s, %(day)s, %(reads)s, %(over)s)
ON CONFLICT (tenant_id, day) DO UPDATE
SET reads = EXCLUDED.reads, judged = EXCLUDED.judged, refreshed_at = now()

-- name: drop_settled_hours
-- The hour rows of a day over for a day already, once every tenant's is judged.
SELECT public.kpi_drop_hours(%(day)s)
WHERE %(day)s + interval '48 hours' <= now()
  AND NOT EXISTS (
      SELECT FROM public.kpi_refreshed_hours AS hours
      LEFT JOIN public.kpi_refreshed_days AS done USING (tenant_id, day)
      WHERE hours.day = %(day)s AND NOT COALESCE(done.judged, false))

-- name: analyze_features
-- Statistics for the features after a pass over many days: on a freshly filled table the
-- planner expects a row a day, and a day's suspects took seconds instead of milliseconds.
ANALYZE public.kpi_meter_day_features

-- name: refresh_lock
-- One refresher at a time, across every API process; held by the session through its pass
-- (which commits day by day), released by refresh_unlock or when the session ends.
SELECT pg_try_advisory_lock(7349827350)

-- name: refresh_lock_wait
-- The same lock, waited for (tests that change what a pass reads).
SELECT pg_advisory_lock(7349827350)

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
