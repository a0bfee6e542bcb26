"""Event bodies: strict validation with messages that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from producer.events import EventError, EventType, parse_event

BASE = {
    "tenantId": "DEMO_TENANT",
    "type": "theft",
    "feederId": "FEEDER_3",
    "startsAt": "2026-03-04T12:00:00Z",
    "durationMinutes": 1440,
}


def body(**changes: Any) -> dict[str, Any]:
    merged = {**BASE, **changes}
    return {key: value for key, value in merged.items() if value is not ...}


def test_defaults_per_type() -> None:
    theft = parse_event(body())
    assert theft.event_type is EventType.THEFT and theft.params == {"pattern": "h1"}
    assert theft.fraction == 0.05
    assert theft.starts_at == datetime(2026, 3, 4, 12, tzinfo=UTC)
    assert theft.ends_at == datetime(2026, 3, 5, 12, tzinfo=UTC)
    sag = parse_event(body(type="voltage-sag"))
    assert sag.params == {"depthPct": 10.0} and sag.fraction == 0.5
    outage = parse_event(body(type="comms-outage", fraction=1))
    assert outage.params == {} and outage.fraction == 1.0


def test_parameters_are_kept() -> None:
    h2 = parse_event(body(pattern="h2", windowStartHour=22, windowHours=6, fraction=0.1))
    assert h2.params == {"pattern": "h2", "windowStartHour": 22.0, "windowHours": 6.0}
    assert parse_event(body(alpha=0.25)).params == {"pattern": "h1", "alpha": 0.25}
    timed = parse_event(body(durationMinutes=..., endsAt="2026-03-04T13:30:00+01:00"))
    assert timed.ends_at == datetime(2026, 3, 4, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"tenantId": ...}, "tenantId is required"),
        ({"tenantId": "no spaces"}, "tenantId must match"),
        ({"type": "flood"}, "type must be one of theft, voltage-sag, comms-outage"),
        ({"feederId": "FEEDER_0"}, "feederId must match"),
        ({"feederId": 3}, "feederId must match"),
        ({"startsAt": "yesterday"}, "startsAt is not an ISO-8601 timestamp"),
        ({"startsAt": "2026-03-04T12:00:00"}, "startsAt needs a UTC offset or Z"),
        ({"startsAt": 1700000000}, "startsAt must be an ISO-8601 string, not 1700000000"),
        ({"durationMinutes": ...}, "give exactly one of endsAt and durationMinutes"),
        ({"endsAt": "2026-03-05T12:00:00Z"}, "give exactly one of endsAt and durationMinutes"),
        ({"durationMinutes": 0}, "durationMinutes must be a positive integer"),
        ({"durationMinutes": 1.5}, "durationMinutes must be a positive integer"),
        ({"durationMinutes": True}, "durationMinutes must be a positive integer"),
        ({"durationMinutes": ..., "endsAt": "2026-03-04T11:00:00Z"}, "endsAt must be after"),
        ({"durationMinutes": 600_000}, "durationMinutes must be at most 366 days"),
        ({"fraction": 0}, "fraction must be in (0, 1], not 0"),
        ({"fraction": 1.5}, "fraction must be in (0, 1]"),
        ({"fraction": "half"}, "fraction must be a number"),
        ({"pattern": "h7"}, "pattern must be one of h1, h2, h3, h4, h5, h6"),
        ({"alpha": 0.9}, "alpha must be in [0.1, 0.8]"),
        ({"pattern": "h3", "alpha": 0.5}, "alpha applies to pattern h1 only"),
        ({"windowHours": 4}, "windowHours applies to pattern h2 only"),
        ({"pattern": "h2", "windowStartHour": 24}, "windowStartHour must be in [0, 24)"),
        ({"depthPct": 20}, "field(s) depthPct do not apply to theft"),
        ({"type": "voltage-sag", "depthPct": 0}, "depthPct must be in (0, 50]"),
        ({"type": "comms-outage", "pattern": "h1"}, "field(s) pattern do not apply"),
    ],
)
def test_an_invalid_body_names_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(body(**changes))
    assert str(raised.value).startswith(message)
