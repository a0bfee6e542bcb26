-- Reads delivered late: a meter keeps its interval data through a buffered comms outage
-- and delivers the missed intervals once its link returns (producer/backlog.py).
--
-- Each such read is stored marked late; the status rollups count them per group with the
-- longest lateness seen (stored time − read time, in seconds), so status and the
-- dashboard show per tenant how much arrived late and how late, without scanning the
-- table. Constant defaults: no table rewrite.
ALTER TABLE public.meter_reads_electric
    ADD COLUMN IF NOT EXISTS late boolean NOT NULL DEFAULT false;

ALTER TABLE public.meter_reads_rollup
    ADD COLUMN IF NOT EXISTS late_reads       bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS late_seconds_max double precision;
