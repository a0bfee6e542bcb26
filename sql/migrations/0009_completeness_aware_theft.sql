-- Theft judged on the reads a meter-day actually has (SPEC §7).
--
-- A meter's kWh per read, compared with its own earlier days, fell whenever a comms
-- outage took the reads of its busy hours: the reads left were the quiet ones, and an
-- honest meter read as a "consumption-drop". Each meter-day now also keeps its share of
-- its feeder's load over the read times it has (peer_share: its kWh over the feeder's
-- mean kWh at those same read times), and its own baseline compares shares, so hours
-- missing from a day leave the comparison as it was. A meter-day with under 80% of its
-- day's reads is not judged at all (judged = false): kpi_insufficient_data_on reports it
-- beside the suspects, never as one.
ALTER TABLE public.kpi_meter_day_features ADD COLUMN IF NOT EXISTS peer_share double precision;

CREATE OR REPLACE VIEW public.kpi_meter_days AS
SELECT tenant_id, feeder_id, meter_id, day, reads, interval_minutes, kwh_per_read,
       zero_reads, variation, peer_corr, peer_share,
       (reads * interval_minutes / 1440.0)::double precision AS completeness,
       reads * interval_minutes >= 0.8 * 1440 AS judged
FROM public.kpi_meter_day_features;

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
WITH baseline AS (
    SELECT earlier.meter_id, AVG(earlier.peer_share) AS peer_share
    FROM public.kpi_meter_days AS earlier
    WHERE earlier.tenant_id = p_tenant_id
      AND earlier.day >= p_day - INTERVAL '168 hours' AND earlier.day < p_day  -- UTC days
      AND earlier.judged
    GROUP BY earlier.meter_id
), days AS (
    SELECT d.*, d.peer_share / NULLIF(baseline.peer_share, 0) AS own_ratio
    FROM public.kpi_meter_days AS d
    LEFT JOIN baseline ON baseline.meter_id = d.meter_id
    WHERE d.tenant_id = p_tenant_id AND d.day = p_day AND d.judged
), ranked AS (
    SELECT days.*,
           ROW_NUMBER() OVER (PARTITION BY days.feeder_id
                              ORDER BY days.own_ratio NULLS LAST)   AS position,
           COUNT(days.own_ratio) OVER (PARTITION BY days.feeder_id) AS peers
    FROM days
), scored AS (
    SELECT ranked.tenant_id, ranked.feeder_id, ranked.meter_id, ranked.day, ranked.reads,
           ranked.own_ratio, ranked.zero_reads, ranked.variation, ranked.peer_corr,
           ranked.own_ratio / NULLIF(AVG(ranked.own_ratio) FILTER (
               WHERE ranked.position IN ((ranked.peers + 1) / 2, (ranked.peers + 2) / 2))
               OVER (PARTITION BY ranked.feeder_id), 0) AS peer_ratio
    FROM ranked
)
SELECT scored.*,
       array_remove(ARRAY[
           CASE WHEN scored.peer_ratio < 0.85 THEN 'consumption-drop' END,
           CASE WHEN scored.zero_reads >= 4 THEN 'zero-reads' END,
           CASE WHEN scored.variation < 0.15 THEN 'flat-profile' END,
           CASE WHEN scored.peer_corr < 0.3 THEN 'profile-mismatch' END
       ], NULL) AS reasons
FROM scored
WHERE scored.peer_ratio < 0.85 OR scored.zero_reads >= 4 OR scored.variation < 0.15
   OR scored.peer_corr < 0.3
$$;

-- The tenant's meter-days of one day with too few reads to judge, least complete first.
CREATE OR REPLACE FUNCTION public.kpi_insufficient_data_on(p_tenant_id text, p_day timestamptz)
RETURNS TABLE (feeder_id text, meter_id text, reads integer, completeness double precision)
LANGUAGE sql STABLE AS $$
SELECT d.feeder_id, d.meter_id, d.reads, d.completeness
FROM public.kpi_meter_days AS d
WHERE d.tenant_id = p_tenant_id AND d.day = p_day AND NOT d.judged
ORDER BY d.completeness, d.meter_id
$$;

-- Every day's features are computed again (peer_share) by the next refresh pass.
DELETE FROM public.kpi_refreshed_days;
