"""Events: theft, voltage sags, comms outages and vacancy on a fraction of one feeder (SPEC §3).

An event applies to the intervals in [startsAt, endsAt): a read ends its interval, so
to the reads whose ``read_at`` lies in (startsAt, endsAt] (an event of one UTC day
falsifies exactly that day's reads, those its KPI features take), on its feeder, to a
deterministic subset of that feeder's meters: meter m is a member when a hash of
(tenant, m, event id) falls below ``fraction``.

Theft falsifies kWh with one of the six false-data-injection patterns of Jokar,
Arianpoo & Leung, "Electricity Theft Detection in AMI Using Customers'
Consumption Patterns", IEEE Trans. Smart Grid 7(1), 2016 (x_t is the honest read):

    h1  α·x_t                      α fixed per meter in 0.1–0.8 (or ``alpha``)
    h2  0 inside a daily window, x_t outside (``windowStartHour``, ``windowHours``)
    h3  γ_t·x_t                    γ_t drawn per interval in 0.1–0.8
    h4  γ_t·mean(x) of the day
    h5  mean(x) of the day
    h6  x at the mirrored time of day (the day reversed)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import numpy as np

from gridlens.entry import FEEDER_PATTERN, TENANT_PATTERN
from gridlens.errors import GridLensError
from gridlens.timestamps import OutOfRange, parse_utc
from producer.model import KWH_NOISE_SIGMA, MINUTES_PER_DAY
from producer.randomness import FloatArray, Stream, lognormal_noise, uniform


class EventType(StrEnum):
    THEFT = "theft"
    """Metered kWh falsified by one of the patterns h1–h6."""
    VOLTAGE_SAG = "voltage-sag"
    """Voltage depressed by ``depthPct`` percent."""
    COMMS_OUTAGE = "comms-outage"
    """No row at all while it lasts; ``buffered``: the missed reads come after it, late."""
    VACANCY = "vacancy"
    """An honest empty home: only its always-on load while it lasts."""


DEFAULT_FRACTION: Final = {
    EventType.THEFT: 0.05,  # a few households on the feeder
    EventType.VOLTAGE_SAG: 0.5,  # a section of the feeder
    EventType.COMMS_OUTAGE: 0.1,  # a collector's worth of meters
    EventType.VACANCY: 0.02,  # homes between occupants, or away for weeks
}
THEFT_PATTERNS: Final = ("h1", "h2", "h3", "h4", "h5", "h6")
FACTOR_RANGE: Final = (0.1, 0.8)  # α and γ_t of Jokar et al.
MIN_WINDOW_HOURS: Final = 4.0  # h2's daily zero window, when drawn
MAX_WINDOW_HOURS: Final = 10.0
DEFAULT_DEPTH_PCT: Final = 10.0
VACANT_KW: Final = (0.02, 0.08)  # a vacant home's always-on load, per meter (docs/emulator.md)
MAX_DURATION: Final = timedelta(days=366)
MAX_DURATION_MINUTES: Final = int(MAX_DURATION.total_seconds()) // 60
_COMMON_FIELDS: Final = frozenset(
    {"tenantId", "type", "feederId", "startsAt", "endsAt", "durationMinutes", "fraction"}
)
_TYPE_FIELDS: Final = {
    EventType.THEFT: frozenset({"pattern", "alpha", "windowStartHour", "windowHours"}),
    EventType.VOLTAGE_SAG: frozenset({"depthPct"}),
    EventType.COMMS_OUTAGE: frozenset({"buffered"}),
    EventType.VACANCY: frozenset(),
}
_PATTERN_FIELDS: Final = {"alpha": "h1", "windowStartHour": "h2", "windowHours": "h2"}


class EventError(GridLensError, ValueError):
    """An event body that is not valid; the message names the field."""


class ImplausibleEvent(EventError):
    """A well-formed body that describes no possible event (it ends before it starts)."""


@dataclass(frozen=True)
class Event:
    event_id: int
    tenant_id: str
    event_type: EventType
    feeder_id: str
    starts_at: datetime
    ends_at: datetime
    fraction: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def applies(self, feeder_id: str, read_at: datetime) -> bool:
        """On the feeder, for the read ending at ``read_at``: reads end their interval, so
        an event of [startsAt, endsAt) covers the reads ending in (startsAt, endsAt]."""
        return self.feeder_id == feeder_id and self.starts_at < read_at <= self.ends_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "tenantId": self.tenant_id,
            "type": self.event_type.value,
            "feederId": self.feeder_id,
            "startsAt": self.starts_at.isoformat().replace("+00:00", "Z"),
            "endsAt": self.ends_at.isoformat().replace("+00:00", "Z"),
            "fraction": self.fraction,
            **self.params,
        }


def members(seed: int, event: Event, meters: np.ndarray) -> np.ndarray:
    """Which of ``meters`` the event affects: a stable subset of about ``fraction``."""
    return uniform(seed, Stream.EVENT_MEMBER, meters, event.event_id) < event.fraction


HonestAt = Callable[[np.ndarray, np.ndarray], FloatArray]
"""The honest reads of some meters at other read times of the day: (meters, epoch minutes),
broadcast together, to kWh."""


def apply_theft(
    seed: int,
    event: Event,
    meters: np.ndarray,
    minutes: int,
    interval_minutes: int,
    honest: FloatArray,
    honest_at: HonestAt,
) -> FloatArray:
    """The falsified kWh of the member ``meters`` for the interval ending at ``minutes``;
    ``honest_at`` gives their honest reads at other times (h4–h6 need the day's)."""
    pattern = event.params.get("pattern", "h1")
    low, high = FACTOR_RANGE
    key = event.event_id
    if pattern == "h1":
        alpha = event.params.get("alpha")
        factor = (
            np.full(len(meters), float(alpha))
            if alpha is not None
            else low + (high - low) * uniform(seed, Stream.THEFT_ALPHA, meters, key)
        )
        result: FloatArray = factor * honest
        return result
    if pattern == "h2":
        return np.where(
            _in_zero_window(seed, event, meters, minutes, interval_minutes), 0.0, honest
        )
    gamma = low + (high - low) * uniform(seed, Stream.THEFT_GAMMA, meters, minutes, key)
    if pattern == "h3":
        result = gamma * honest
        return result
    if pattern in ("h4", "h5"):
        day = _day_read_minutes(minutes, interval_minutes)
        daily_mean = honest_at(meters[:, None], day[None, :]).mean(axis=1)
        result = gamma * daily_mean if pattern == "h4" else daily_mean
        return result
    mirrored = np.array([mirrored_read_minutes(minutes, interval_minutes)])
    result = honest_at(meters, mirrored)
    return result


def vacant_kwh(seed: int, meters: np.ndarray, minutes: int, interval_minutes: int) -> FloatArray:
    """What an empty home's meter reads: its always-on load, steady around the clock."""
    low, high = VACANT_KW
    kw = low + (high - low) * uniform(seed, Stream.VACANT_LOAD, meters)
    noise = lognormal_noise(KWH_NOISE_SIGMA, seed, Stream.KWH_NOISE, minutes, meters)
    result: FloatArray = kw * interval_minutes / 60.0 * noise
    return result


def _day_read_minutes(minutes: int, interval_minutes: int) -> np.ndarray:
    """The read times (epoch minutes) of every interval of the UTC day of this read."""
    day_start = (minutes - interval_minutes) // MINUTES_PER_DAY * MINUTES_PER_DAY
    return day_start + interval_minutes * np.arange(1, MINUTES_PER_DAY // interval_minutes + 1)


def mirrored_read_minutes(minutes: int, interval_minutes: int) -> int:
    """The read time of the interval at the mirrored position of the same day."""
    day_start = (minutes - interval_minutes) // MINUTES_PER_DAY * MINUTES_PER_DAY
    index = (minutes - day_start) // interval_minutes - 1  # 0 .. N-1
    count = MINUTES_PER_DAY // interval_minutes
    return int(day_start + (count - index) * interval_minutes)


def _in_zero_window(
    seed: int, event: Event, meters: np.ndarray, minutes: int, interval_minutes: int
) -> np.ndarray:
    params = event.params
    draws = uniform(seed, Stream.THEFT_WINDOW, meters, event.event_id)
    start = (
        np.full(len(meters), float(params["windowStartHour"]))
        if "windowStartHour" in params
        else 24.0 * draws
    )
    hours = (
        np.full(len(meters), float(params["windowHours"]))
        if "windowHours" in params
        else MIN_WINDOW_HOURS + (MAX_WINDOW_HOURS - MIN_WINDOW_HOURS) * ((draws * 7.0) % 1.0)
    )
    hour_of_day = ((minutes - interval_minutes / 2) % MINUTES_PER_DAY) / 60.0
    result: np.ndarray = (hour_of_day - start) % 24.0 < hours
    return result


# ---------------------------------------------------------------- parsing the API body


def parse_event(body: Mapping[str, Any]) -> Event:
    """A new event from an API body (event_id 0 until stored), or EventError."""
    unknown = set(body) - _COMMON_FIELDS - set().union(*_TYPE_FIELDS.values())
    if unknown:
        raise EventError(f"unknown field(s): {', '.join(sorted(unknown))}")
    tenant_id = _string(body, "tenantId", TENANT_PATTERN)
    raw_type = _required(body, "type")
    try:
        event_type = EventType(raw_type)
    except ValueError:
        raise EventError(
            f"type must be one of {', '.join(t.value for t in EventType)}, not {raw_type!r}"
        ) from None
    misplaced = set(body) - _COMMON_FIELDS - _TYPE_FIELDS[event_type]
    if misplaced:
        raise EventError(f"field(s) {', '.join(sorted(misplaced))} do not apply to {event_type}")
    feeder_id = _string(body, "feederId", FEEDER_PATTERN)
    starts_at = _timestamp(body, "startsAt")
    ends_at = _ends_at(body, starts_at)
    fraction = _number(
        body, "fraction", DEFAULT_FRACTION[event_type], low=0.0, high=1.0, low_open=True
    )
    return Event(
        event_id=0,
        tenant_id=tenant_id,
        event_type=event_type,
        feeder_id=feeder_id,
        starts_at=starts_at,
        ends_at=ends_at,
        fraction=fraction,
        params=_params(body, event_type),
    )


def _params(body: Mapping[str, Any], event_type: EventType) -> dict[str, Any]:
    if event_type is EventType.VOLTAGE_SAG:
        return {
            "depthPct": _number(
                body, "depthPct", DEFAULT_DEPTH_PCT, low=0.0, high=50.0, low_open=True
            )
        }
    if event_type is EventType.COMMS_OUTAGE and "buffered" in body:
        if body["buffered"] is not True and body["buffered"] is not False:
            raise EventError(f"buffered must be true or false, not {body['buffered']!r}")
        return {"buffered": body["buffered"]}
    if event_type in (EventType.COMMS_OUTAGE, EventType.VACANCY):
        return {}
    pattern = body.get("pattern", "h1")
    if pattern not in THEFT_PATTERNS:
        raise EventError(f"pattern must be one of {', '.join(THEFT_PATTERNS)}, not {pattern!r}")
    params: dict[str, Any] = {"pattern": pattern}
    for name, owner in _PATTERN_FIELDS.items():
        if name in body and pattern != owner:
            raise EventError(f"{name} applies to pattern {owner} only")
    if "alpha" in body:
        params["alpha"] = _number(body, "alpha", 0.0, low=FACTOR_RANGE[0], high=FACTOR_RANGE[1])
    if "windowStartHour" in body:
        params["windowStartHour"] = _number(
            body, "windowStartHour", 0.0, low=0.0, high=24.0, high_open=True
        )
    if "windowHours" in body:
        params["windowHours"] = _number(
            body, "windowHours", 0.0, low=0.0, high=24.0, low_open=True, high_open=True
        )
    return params


def _required(body: Mapping[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise EventError(f"{name} is required")
    return body[name]


def _string(body: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = _required(body, name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise EventError(f"{name} must match {pattern.pattern}, not {value!r}")
    return value


def _timestamp(body: Mapping[str, Any], name: str) -> datetime:
    try:
        return parse_utc(name, _required(body, name))
    except OutOfRange as error:
        raise ImplausibleEvent(str(error)) from None
    except ValueError as error:
        raise EventError(str(error)) from None


def _ends_at(body: Mapping[str, Any], starts_at: datetime) -> datetime:
    if ("endsAt" in body) == ("durationMinutes" in body):
        raise EventError("give exactly one of endsAt and durationMinutes")
    if "endsAt" in body:
        ends_at = _timestamp(body, "endsAt")
    else:
        minutes = body["durationMinutes"]
        if type(minutes) is float and minutes.is_integer():
            minutes = int(minutes)  # JSON has one number type: 60.0 is 60
        if type(minutes) is not int or minutes <= 0:
            raise EventError(f"durationMinutes must be a positive integer, not {minutes!r}")
        if minutes > MAX_DURATION_MINUTES:
            raise EventError(f"durationMinutes must be at most 366 days ({MAX_DURATION_MINUTES})")
        try:
            ends_at = starts_at + timedelta(minutes=minutes)
        except OverflowError:
            raise ImplausibleEvent("the event would end after the year 9999") from None
    if ends_at <= starts_at:
        raise ImplausibleEvent("endsAt must be after startsAt")
    if ends_at - starts_at > MAX_DURATION:
        raise ImplausibleEvent("an event lasts at most 366 days")
    return ends_at


def _number(
    body: Mapping[str, Any],
    name: str,
    default: float,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    if name not in body:
        return default
    value = body[name]
    if type(value) not in (int, float):
        raise EventError(f"{name} must be a number, not {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise EventError(f"{name} must be in {interval}, not {value}")
    return float(value)
