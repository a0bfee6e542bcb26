-- The meter sets whose meters are registered in tenant_meters, shared by every consumer.
--
-- A job carries one meter set (one feeder's batch), the same every interval. The insert
-- registers the set's meters in tenant_meters only in the job that registers the set
-- here (ON CONFLICT DO NOTHING: one index probe for a known set instead of one per
-- meter). Kept in the same transaction as the registrations, so it is never ahead of
-- them, whichever process or restart inserts next. meter_set: the first 16 bytes of the
-- SHA-256 of the set's meter numbers as 64-bit little-endian integers (consumer/ingest.py).
CREATE TABLE IF NOT EXISTS public.tenant_meter_sets (
    tenant_id text NOT NULL,
    meter_set uuid NOT NULL,
    PRIMARY KEY (tenant_id, meter_set)
);
