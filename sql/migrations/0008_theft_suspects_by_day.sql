-- Theft suspects of one tenant and day, from the 8 days of features the verdict needs.
--
-- kpi_theft_suspects (0004) windows over a tenant's whole history before a day is picked:
-- for the quickcheck's one day it sorted every day's features (125,000 rows at 5 days of
-- 25,000 meters, spilling to disk: 170-185 ms, and growing with every day kept). The same
-- rules now live in a function that reads the day's features and, for each meter's own
-- baseline, the average of its 7 days before (a hash aggregate, no sort), all through the
-- primary key (tenant_id, day, meter_id): 5.5 ms. "Up to 7 earlier days" now counts
-- calendar days, so a meter with missing days is compared with the days it has in that
-- week (0004 took its 7 latest earlier days, however old). The view keeps its columns and
-- reads through the function, so the rules are written once.
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
    SELECT earlier.meter_id, AVG(earlier.kwh_per_read) AS kwh_per_read
    FROM public.kpi_meter_days AS earlier
    WHERE earlier.tenant_id = p_tenant_id
      AND earlier.day >= p_day - INTERVAL '168 hours' AND earlier.day < p_day  -- UTC days
    GROUP BY earlier.meter_id
), days AS (
    SELECT d.*, d.kwh_per_read / NULLIF(baseline.kwh_per_read, 0) AS own_ratio
    FROM public.kpi_meter_days AS d
    LEFT JOIN baseline ON baseline.meter_id = d.meter_id
    WHERE d.tenant_id = p_tenant_id AND d.day = p_day
), ranked AS (
    SELECT days.*,
           ROW_NUMBER() OVER (PARTITION BY days.feeder_id
                              ORDER BY days.own_ratio NULLS LAST)   AS position,
           COUNT(days.own_ratio) OVER (PARTITION BY days.feeder_id) AS peers
    FROM days
    WHERE days.reads * days.interval_minutes >= 720
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

-- tenant_id and day come from the judged days, so a filter on them narrows those (one
-- call of the function per tenant and day asked for), not the function's output.
CREATE OR REPLACE VIEW public.kpi_theft_suspects AS
SELECT judged.tenant_id, suspect.feeder_id, suspect.meter_id, judged.day, suspect.reads,
       suspect.own_ratio, suspect.zero_reads, suspect.variation, suspect.peer_corr,
       suspect.peer_ratio, suspect.reasons
FROM (SELECT DISTINCT features.tenant_id, features.day
      FROM public.kpi_meter_day_features AS features) AS judged
CROSS JOIN LATERAL public.kpi_theft_suspects_on(judged.tenant_id, judged.day) AS suspect;
