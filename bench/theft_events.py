"""The events of the theft benchmark's scenarios (bench/theft.py): thefts on whole UTC days,
and the comms outages and voltage sags that confound them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bench.theft_score import day_start
from producer.events import THEFT_PATTERNS, Event, EventType
from producer.fleet import feeder_id


def event(
    tenant: str,
    event_id: int,
    event_type: EventType,
    feeder: int,
    *,
    day: int,
    fraction: float,
    hour: int = 0,
    hours: int = 24,
    params: dict[str, Any] | None = None,
) -> Event:
    """An event on ``feeder`` from ``hour`` o'clock of ``day`` for ``hours`` (default: the day)."""
    starts_at = day_start(day) + timedelta(hours=hour)
    return Event(
        event_id=event_id,
        tenant_id=tenant,
        event_type=event_type,
        feeder_id=feeder_id(feeder),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=hours),
        fraction=fraction,
        params=params or {},
    )


def thefts(
    tenant: str, share: float, feeders: Sequence[Sequence[int]], first: int, last: int
) -> tuple[Event, ...]:
    """Pattern h(n+1) on ``feeders[n]``, from day ``first`` 00:00 to the end of day ``last``."""
    return tuple(
        event(
            tenant,
            1_000 + 10 * n + k,
            EventType.THEFT,
            feeder,
            day=first,
            hours=24 * (last - first + 1),
            fraction=share,
            params={"pattern": pattern},
        )
        for n, pattern in enumerate(THEFT_PATTERNS)
        for k, feeder in enumerate(feeders[n])
    )


# confounded, on day 8: (feeder, start hour, hours, fraction). Theft h1..h6 is on feeders
# 2, 4, .., 12: outages on those of h1, h2, h4, h6, sags on those of h3, h5, h6; the other
# feeders are clean. From 5 h at most 79% of a day's reads are left: not judged (0009).
OUTAGES = (
    (2, 0, 8, 0.5),
    (4, 17, 4, 0.4),
    (8, 7, 2, 0.3),
    (12, 19, 5, 0.5),
    (14, 18, 6, 0.5),
    (16, 12, 1, 0.3),
    (18, 3, 3, 0.4),
    (20, 9, 8, 0.3),
    (22, 16, 4, 0.5),
)
SAGS = ((6, 6, 3, 0.5), (10, 17, 4, 0.5), (12, 8, 6, 0.5), (15, 0, 24, 1.0), (22, 6, 8, 0.5))


def confounders(tenant: str) -> tuple[Event, ...]:
    """Day 8's comms outages (every other one buffered) and voltage sags."""
    kinds = ((EventType.COMMS_OUTAGE, 2_000, OUTAGES), (EventType.VOLTAGE_SAG, 3_000, SAGS))
    return tuple(
        event(
            tenant,
            first_id + n,
            kind,
            f,
            day=8,
            hour=h,
            hours=d,
            fraction=p,
            params=_confound_params(kind, n),
        )
        for kind, first_id, table in kinds
        for n, (f, h, d, p) in enumerate(table)
    )


def _confound_params(kind: EventType, n: int) -> dict[str, Any]:
    if kind is EventType.VOLTAGE_SAG:
        return {"depthPct": 12.0}
    return {"buffered": True} if n % 2 else {}
