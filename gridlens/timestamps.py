"""ISO-8601 timestamps from API bodies: an explicit UTC offset, normalised to UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_utc(name: str, value: Any) -> datetime:
    """The UTC instant of ``value``; ValueError naming ``name`` when it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO-8601 string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} is not an ISO-8601 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} needs a UTC offset or Z: {value!r}")
    return moment.astimezone(UTC)
