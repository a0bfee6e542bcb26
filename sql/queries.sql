-- Named queries, loaded once by gridlens.sqlfiles. A block runs from its
-- "-- name:" line to the next one.

-- name: insert_reads
-- One statement per job: the whole batch as binary arrays, unnested server-side.
-- Re-delivery is harmless: a read already stored is skipped (SPEC §5).
INSERT INTO public.meter_reads_electric
    (tenant_id, meter_id, feeder_id, read_at, interval_minutes, kwh, voltage)
SELECT %(tenant_id)s, batch.meter_id, %(feeder_id)s, %(read_at)s, %(interval_minutes)s,
       batch.kwh, batch.voltage
FROM unnest(%(meter_ids)s::text[], %(kwh)s::float8[], %(voltage)s::float8[])
     AS batch (meter_id, kwh, voltage)
ON CONFLICT (tenant_id, meter_id, read_at) DO NOTHING

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
-- The events in force at one read time (the producer reads them at every publish).
SELECT event_id, tenant_id, event_type, feeder_id, starts_at, ends_at, fraction, params
FROM public.ami_events
WHERE tenant_id = %(tenant_id)s AND starts_at <= %(read_at)s AND ends_at > %(read_at)s
ORDER BY event_id

-- name: delete_event
DELETE FROM public.ami_events WHERE event_id = %(event_id)s RETURNING event_id

-- name: tenant_status
SELECT COUNT(DISTINCT meter_id), COUNT(*), MAX(read_at)
FROM public.meter_reads_electric
WHERE tenant_id = %(tenant_id)s
