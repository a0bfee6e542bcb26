-- A day's features are written once, with its verdict, when the day is over (#16).
--
-- 0014's passes kept the features of the day in progress current: every pass rewrote the
-- day's rows (25,000 at 25,000 meters), and its close twice more. Now a pass keeps only the
-- hour rows of a day in progress (kpi_meter_hours); once the day is over, a pass adds them
-- up, judges the day and inserts its rows (api/kpi_judge.py). The rows 0014 left for days
-- not judged yet go; the pass that closes each of those days writes them.
DELETE FROM public.kpi_meter_day_features AS f
USING public.kpi_refreshed_days AS done
WHERE done.tenant_id = f.tenant_id AND done.day = f.day AND NOT done.judged;

-- Each meter's earlier day is found among the day before's rows (a range of the primary
-- key), and only the meters missing there are looked up further back. The index on
-- (tenant_id, meter_id, day) that served that lookup goes: a day's rows, inserted into it,
-- landed on nearly every one of its leaf pages, an index that grows with the history.
DROP INDEX IF EXISTS public.kpi_meter_day_features_meter;
