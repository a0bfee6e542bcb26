-- Theft judged against a baseline that theft cannot pollute, hour by hour (SPEC §7).
--
-- 0008/0009 compared a meter-day with the average of the meter's 7 days before. Theft
-- that lasted a week became its own baseline: by its eighth day nothing had dropped.
-- And a day's share of its feeder's load, taken over the hours it had, fell whenever an
-- outage took hours in which this household uses more than its peers (an evening
-- person's evening), so an honest meter read as a "consumption-drop".
--
-- Now each meter-day keeps, per hour of the day (UTC, by the interval's middle), the
-- meter's kWh and its peers' mean kWh over the same read times, and the baseline it was
-- judged against: the meter's usual share of its peers' load for each hour. The verdict
-- is made once, when the day's features are refreshed, and stored with them:
--   own_ratio   the day's kWh over what its baseline expects, given its peers' load,
--               over the hours both have (an outage removes those hours from both sides);
--   own_corr    the hourly profile against that expectation (the household's own rhythm);
--   own_error   the standard error of own_ratio, from how far the day's hours stray from
--               their expectation (a day of 24 hourly reads is far noisier than one of 96);
--   peer_ratio  own_ratio over the median own_ratio of the feeder's meters that day.
-- A consumption drop is a peer_ratio under 0.85 that is also 3 standard errors below 1,
-- taking the larger of the meter's own and its feeder's median (one day's 24 hours
-- estimate a meter's error loosely).
-- The baseline moves (a running mean over up to 7 days) only with days that were found
-- clean: a day of suspected theft, of near-zero use, near a drop or a mismatch (a
-- peer_ratio under 0.9, an own_corr under 0.8, a peer_rank under 0.55), or with under
-- half its reads leaves it where it was. peer_rank, the day's hourly profile against its
-- peers' (kpi_rank_corr), is the one comparison a lasting theft cannot teach. So a drop is measured from before the change for as long as it
-- lasts. A meter silent for more than 8 days starts a new baseline.
--
-- A meter that has exported (rooftop PV, net metered: sql/migrations/0011) is a generator
-- from then on, and is compared over the hours without sun on its feeder only (no meter of
-- the feeder exported in them): in daylight what it draws follows the weather. Its zero
-- reads count only when it exported nothing either.
--
-- Near-zero use (under 0.1 kW on average, with no daily rhythm: a vacant home, or a
-- meter bypassed whole) is its own KPI, kpi_near_zero_on, and never a theft suspect.
ALTER TABLE public.kpi_meter_day_features
    ADD COLUMN IF NOT EXISTS hour_kwh      double precision[],
    ADD COLUMN IF NOT EXISTS hour_peer     double precision[],
    ADD COLUMN IF NOT EXISTS baseline      double precision[],
    ADD COLUMN IF NOT EXISTS baseline_days integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS own_ratio     double precision,
    ADD COLUMN IF NOT EXISTS own_corr      double precision,
    ADD COLUMN IF NOT EXISTS own_error     double precision,
    ADD COLUMN IF NOT EXISTS peer_ratio    double precision,
    ADD COLUMN IF NOT EXISTS near_zero     boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS reasons       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS generator     boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS peer_rank     double precision;

-- The rules, written once: what a judged meter-day's features say about theft.
CREATE OR REPLACE FUNCTION public.kpi_theft_reasons(
    peer_ratio double precision, own_error double precision, zero_reads integer,
    interval_minutes integer,
    variation double precision, own_corr double precision, peer_rank double precision
) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
SELECT array_remove(ARRAY[
    CASE WHEN peer_ratio < LEAST(0.85, 1 - 3 * own_error) THEN 'consumption-drop' END,
    CASE WHEN zero_reads * interval_minutes >= 30 THEN 'zero-reads' END,  -- half an hour
    CASE WHEN variation < 0.15 THEN 'flat-profile' END,
    CASE WHEN own_corr < 0.65 OR peer_rank < 0.3 OR (own_corr < 0.85 AND peer_rank < 0.55)
         THEN 'profile-mismatch' END
], NULL)
$$;

-- The rank correlation of two hourly profiles over the hours both have, leaving out the
-- two hours whose ranks disagree most (an EV's session, PV at dawn: a household's odd
-- hours, where a whole day reversed or flattened disagrees everywhere). With no baseline
-- yet, a meter's profile is compared with its peers' this way.
CREATE OR REPLACE FUNCTION public.kpi_rank_corr(
    first double precision[], second double precision[]
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
SELECT CORR(first_rank, second_rank)
FROM (
    SELECT first_rank, second_rank,
           row_number() OVER (ORDER BY abs(first_rank - second_rank) DESC, hour)
               AS disagreement  -- ties go to the earlier hour: the same data, the same answer
    FROM (
        SELECT hour, rank() OVER (ORDER BY a) AS first_rank,
               rank() OVER (ORDER BY b) AS second_rank
        FROM unnest(first, second) WITH ORDINALITY AS hours(a, b, hour)
        WHERE a IS NOT NULL AND b IS NOT NULL
    ) AS ranked
) AS trimmed
WHERE disagreement > 2
$$;

-- A day's hourly kWh against the baseline's expectation (share × the peers' kWh), over
-- the hours with reads and a baseline. Robust to a few odd hours, which are an honest
-- household's (an EV charging for two hours on some evenings, not on others; PV at dawn):
--   own_ratio  the median of the hours' ratios of kWh to expectation;
--   own_corr   their rank correlation with the expectation (kpi_rank_corr);
--   own_error  the median's standard error (1.25 σ / √n), widened for a baseline learnt
--              from few days, which carries the same noise.
CREATE OR REPLACE FUNCTION public.kpi_compare_hours(
    hour_kwh double precision[], hour_peer double precision[], baseline double precision[],
    baseline_days integer
) RETURNS TABLE (
    own_ratio double precision, own_corr double precision, own_error double precision
)
LANGUAGE sql IMMUTABLE AS $$
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY kwh / NULLIF(share * peer, 0)),
       public.kpi_rank_corr(array_agg(kwh), array_agg(share * peer)),
       1.2533 * STDDEV_SAMP(kwh / NULLIF(share * peer, 0)) / SQRT(COUNT(*))
           * SQRT(1 + 1.0 / GREATEST(LEAST(baseline_days, 7), 1))
FROM unnest(hour_kwh, hour_peer, baseline) AS hours(kwh, peer, share)
WHERE kwh IS NOT NULL AND share IS NOT NULL
$$;

-- The baseline after a meter-day: moved toward the day's hourly shares when the day was
-- clean, unchanged otherwise.
CREATE OR REPLACE FUNCTION public.kpi_next_baseline(
    baseline double precision[], baseline_days integer, clean boolean,
    hour_kwh double precision[], hour_peer double precision[]
) RETURNS double precision[]
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN NOT clean THEN baseline ELSE (
    SELECT array_agg(CASE WHEN day_share IS NULL THEN share
                          WHEN share IS NULL THEN day_share
                          ELSE share + (day_share - share) / LEAST(baseline_days + 1, 7) END
                     ORDER BY hour)
    FROM unnest(baseline, hour_kwh, hour_peer) WITH ORDINALITY
         AS hours(share, kwh, peer, hour)
    CROSS JOIN LATERAL (SELECT kwh / NULLIF(peer, 0) AS day_share) AS today
) END
$$;

-- 0009's whole-day share of the feeder's load (peer_share) gives way to the hourly arrays.
DROP VIEW IF EXISTS public.kpi_meter_days;
ALTER TABLE public.kpi_meter_day_features DROP COLUMN IF EXISTS peer_share;
CREATE VIEW public.kpi_meter_days AS
SELECT tenant_id, feeder_id, meter_id, day, reads, interval_minutes, kwh_per_read,
       zero_reads, variation, peer_corr,
       (reads * interval_minutes / 1440.0)::double precision AS completeness,
       reads * interval_minutes >= 0.8 * 1440 AS judged,
       own_ratio, own_corr, own_error, peer_ratio, baseline_days, near_zero, reasons,
       (kwh_per_read * 60.0 / interval_minutes)::double precision AS mean_kw,
       hour_kwh, hour_peer, baseline, generator, peer_rank
FROM public.kpi_meter_day_features;

-- A day's suspects: read from the verdicts stored with its features.
CREATE OR REPLACE FUNCTION public.kpi_theft_suspects_on(p_tenant_id text, p_day timestamptz)
RETURNS TABLE (
    tenant_id  text,
    feeder_id  text,
    meter_id   text,
    day        timestamptz,
    reads      integer,
    own_ratio  double precision,
    zero_reads integer,
    variation  double precision,
    peer_corr  double precision,
    peer_ratio double precision,
    reasons    text[]
)
LANGUAGE sql STABLE AS $$
SELECT d.tenant_id, d.feeder_id, d.meter_id, d.day, d.reads, d.own_ratio, d.zero_reads,
       d.variation, d.peer_corr, d.peer_ratio, d.reasons
FROM public.kpi_meter_days AS d
WHERE d.tenant_id = p_tenant_id AND d.day = p_day
  AND d.judged AND NOT d.near_zero AND cardinality(d.reasons) > 0
$$;

-- The tenant's meter-days of one day with near-zero use, lowest first.
CREATE OR REPLACE FUNCTION public.kpi_near_zero_on(p_tenant_id text, p_day timestamptz)
RETURNS TABLE (feeder_id text, meter_id text, reads integer, mean_kw double precision)
LANGUAGE sql STABLE AS $$
SELECT d.feeder_id, d.meter_id, d.reads, d.mean_kw
FROM public.kpi_meter_days AS d
WHERE d.tenant_id = p_tenant_id AND d.day = p_day AND d.judged AND d.near_zero
ORDER BY d.mean_kw, d.meter_id
$$;

-- Vacancy: an honest event type of the emulator (producer/events.py).
ALTER TABLE public.ami_events DROP CONSTRAINT IF EXISTS ami_events_event_type_check;
ALTER TABLE public.ami_events ADD CONSTRAINT ami_events_event_type_check
    CHECK (event_type IN ('theft', 'voltage-sag', 'comms-outage', 'vacancy'));

-- Every day's features and verdicts are computed again, oldest first, by the next pass.
DELETE FROM public.kpi_refreshed_days;
