"""Reads generated and encoded per second, one core, 500-meter batches.

A 25,000-meter, 25-feeder fleet: 50 batches of 500 meters per interval, each
generated (honest model, events applied) and encoded as its stream entry; without PV
and EV meters, and with the deployment's default shares of them (GRIDLENS_PV_SHARE,
GRIDLENS_EV_SHARE), over the 40 intervals from midnight to 10:00, night and day.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from gridlens.entry import encode
from gridlens.settings import DEFAULT_EV_SHARE, DEFAULT_PV_SHARE
from producer.batch import generate_batch
from producer.diversity import NO_PV_OR_EV, FleetMix
from producer.events import Event, EventType
from producer.fleet import IntArray, feeder_meters

METERS, FEEDERS, BATCH = 25_000, 25, 500
INTERVALS = 40  # 1,000,000 reads
START = datetime(2026, 3, 2, tzinfo=UTC)


def fleet_batches() -> list[tuple[int, IntArray]]:
    batches: list[tuple[int, IntArray]] = []
    for feeder in range(1, FEEDERS + 1):
        meters = feeder_meters(feeder, 1, METERS, FEEDERS)
        batches += [(feeder, meters[i : i + BATCH]) for i in range(0, len(meters), BATCH)]
    return batches


def run(events: tuple[Event, ...], label: str, mix: FleetMix = NO_PV_OR_EV) -> None:
    batches = fleet_batches()
    reads = 0
    started = time.process_time()
    for step in range(INTERVALS):
        read_at = START + timedelta(minutes=15 * (step + 1))
        for feeder, meters in batches:
            batch = generate_batch(
                publish_id="bench",
                tenant_id="BENCH",
                feeder=feeder,
                meter_numbers=meters,
                read_at=read_at,
                interval_minutes=15,
                events=events,
                mix=mix,
            )
            encode(batch)
            reads += len(batch)
    cpu = time.process_time() - started
    per_batch_us = cpu / (INTERVALS * len(batches)) * 1e6
    print(
        f"{label}: {reads / cpu:,.0f} reads/s generated + encoded "
        f"({reads:,} reads, {cpu:.2f} CPU s, {per_batch_us:.0f} µs per batch)"
    )


def main() -> None:
    run((), "no events")
    default_mix = FleetMix(pv_share=DEFAULT_PV_SHARE, ev_share=DEFAULT_EV_SHARE)
    run((), f"no events, {DEFAULT_PV_SHARE:.0%} PV, {DEFAULT_EV_SHARE:.0%} EV", default_mix)
    window = (START, START + timedelta(days=1))
    events = tuple(
        Event(
            event_id=n,
            tenant_id="BENCH",
            event_type=kind,
            feeder_id=f"FEEDER_{n}",
            starts_at=window[0],
            ends_at=window[1],
            fraction=0.1,
            params=params,
        )
        for n, (kind, params) in enumerate(
            [(EventType.THEFT, {"pattern": f"h{p}"}) for p in range(1, 7)]
            + [(EventType.VOLTAGE_SAG, {"depthPct": 10.0}), (EventType.COMMS_OUTAGE, {})],
            start=1,
        )
    )
    run(events, "8 events on 8 feeders")
    run(events, "8 events on 8 feeders, default PV and EV", default_mix)


if __name__ == "__main__":
    main()
