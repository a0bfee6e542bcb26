-- Emulator ground truth (SPEC §3): theft, voltage sags and comms outages applied by
-- the producer to a deterministic fraction of one feeder's meters within a window.
-- KPI views never read this table.
CREATE TABLE IF NOT EXISTS public.ami_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text             NOT NULL CHECK (tenant_id ~ '^[A-Za-z0-9_]{1,64}$'),
    event_type  text             NOT NULL CHECK (event_type IN ('theft', 'voltage-sag', 'comms-outage')),
    feeder_id   text             NOT NULL,
    starts_at   timestamptz      NOT NULL,
    ends_at     timestamptz      NOT NULL,
    fraction    double precision NOT NULL CHECK (fraction > 0 AND fraction <= 1),
    params      jsonb            NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

CREATE INDEX IF NOT EXISTS ami_events_tenant_window
    ON public.ami_events (tenant_id, starts_at, ends_at);
