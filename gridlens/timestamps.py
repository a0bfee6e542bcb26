"""RFC 3339 timestamps from API bodies (OpenAPI's date-time), normalised to UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

# The date-time of RFC 3339 §5.6, as the OpenAPI document promises: seconds and an
# offset are required, which datetime.fromisoformat alone would not insist on.
RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)


class OutOfRange(ValueError):
    """A well-formed date-time whose UTC instant lies outside the years 1–9999."""


def parse_utc(name: str, value: Any) -> datetime:
    """The UTC instant of ``value``; ValueError naming ``name`` when it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO-8601 string, not {value!r}")
    matched = RFC3339.fullmatch(value)
    if matched and not matched["offset"]:
        raise ValueError(f"{name} needs a UTC offset or Z: {value!r}")
    if not matched:
        raise ValueError(
            f"{name} is not an ISO-8601 timestamp with seconds and an offset, as RFC 3339 has "
            f"it (2026-03-05T12:00:00Z): {value!r}"
        )
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValueError(f"{name} is not a date-time that exists: {value!r}") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise OutOfRange(f"{name} {value} is outside the years 1-9999 in UTC") from None
