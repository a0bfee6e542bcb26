-- One statement per job: the whole batch as binary arrays, unnested server-side.
-- Re-delivery is harmless: a read already stored is skipped (SPEC §5). The rows it did
-- add update the status rollups in the same statement, hence the same transaction, in a
-- row of the job's own meter set (0007); the meters are registered only by the job that
-- registers their meter set (0006). A late batch (a buffered outage's backlog, 0012) is
-- stored marked late, and its lateness (stored time − read time) counted in the rollup.
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
    INSERT INTO public.tenant_meter_sets (tenant_id, meter_set)
    VALUES (%(tenant_id)s, %(meter_set)s::uuid)
    ON CONFLICT (tenant_id, meter_set) DO NOTHING
    RETURNING meter_set
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

