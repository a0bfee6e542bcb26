"""The body of POST /api/ami/publish-once, parsed strictly (SPEC §4).

Malformed input (wrong type, non-integer, ≤ 0, bad tenantId, unknown field) is a
RequestError naming the field. Numbers beyond a safety cap are clamped to it,
with a warning saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from gridlens.entry import INTERVALS_MINUTES, TENANT_PATTERN
from gridlens.errors import GridLensError
from gridlens.settings import Caps, MixDefaults
from gridlens.timestamps import OutOfRange, parse_utc
from producer.diversity import NO_PV_OR_EV, FleetMix
from producer.fleet import align_read_at

MIN_FEEDERS: Final = 10
MAX_FEEDERS: Final = 40
DEFAULTS: Final = {
    "intervalMinutes": 15,
    "batchSize": 500,
    "meterCount": 500,
    "feederCount": 25,
    "dryRun": False,
}
SHARE_FIELDS: Final = ("pvShare", "evShare")  # default: the tenant's, else the deployment's
FIELDS: Final = frozenset({"tenantId", "readAt", *DEFAULTS, *SHARE_FIELDS})
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class RequestError(GridLensError, ValueError):
    """The request cannot be published as asked; nothing was enqueued."""


class ImplausibleRequest(RequestError):
    """A well-formed request that asks for what cannot be (reads from the future)."""


@dataclass(frozen=True)
class PublishRequest:
    tenant_id: str
    interval_minutes: int
    batch_size: int  # effective, after clamping
    meter_count: int  # effective, after clamping (before truncation to the job cap)
    feeder_count: int  # effective, after clamping
    dry_run: bool
    read_at: datetime  # aligned to the interval, UTC
    warnings: tuple[str, ...] = field(default=())
    mix: FleetMix = NO_PV_OR_EV  # shares of meters with rooftop PV and EV


def parse_publish_request(
    body: Mapping[str, Any],
    caps: Caps,
    now: datetime | None = None,
    mix_defaults: MixDefaults | None = None,
) -> PublishRequest:
    """The request of ``body``; PV and EV shares it does not name come from ``mix_defaults``
    (the tenant's, else the deployment's; none without them)."""
    unknown = set(body) - FIELDS
    if unknown:
        raise RequestError(
            f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(FIELDS))}"
        )
    tenant_id = body.get("tenantId")
    if tenant_id is None:
        raise RequestError("tenantId is required")
    if not isinstance(tenant_id, str) or not TENANT_PATTERN.fullmatch(tenant_id):
        raise RequestError(f"tenantId must match {TENANT_PATTERN.pattern}, not {tenant_id!r}")
    interval = _positive_int(body, "intervalMinutes")
    if interval not in INTERVALS_MINUTES:
        raise RequestError(f"intervalMinutes must be one of 5, 15, 30, 60, not {interval}")
    dry_run = body.get("dryRun", DEFAULTS["dryRun"])
    if not isinstance(dry_run, bool):
        raise RequestError(f"dryRun must be true or false, not {dry_run!r}")
    warnings: list[str] = []
    # The batch can never be larger than what the rate cap admits in one second.
    batch_cap = min(caps.batch_size, caps.reads_per_second)
    batch_size = _clamped(body, "batchSize", 1, batch_cap, warnings)
    meter_count = _clamped(body, "meterCount", 1, caps.meter_count, warnings)
    feeder_count = _clamped(body, "feederCount", MIN_FEEDERS, MAX_FEEDERS, warnings)
    moment = now or datetime.now(UTC)
    read_at = align_read_at(_read_at(body, moment), interval)
    if read_at <= EPOCH:
        raise ImplausibleRequest(f"readAt must be after {EPOCH.isoformat()}: reads carry Unix time")
    return PublishRequest(
        tenant_id=tenant_id,
        interval_minutes=interval,
        batch_size=batch_size,
        meter_count=meter_count,
        feeder_count=feeder_count,
        dry_run=dry_run,
        read_at=read_at,
        warnings=tuple(warnings),
        mix=_mix(body, tenant_id, mix_defaults),
    )


def _mix(body: Mapping[str, Any], tenant_id: str, defaults: MixDefaults | None) -> FleetMix:
    pv, ev = defaults.for_tenant(tenant_id) if defaults else (0.0, 0.0)
    return FleetMix(pv_share=_share(body, "pvShare", pv), ev_share=_share(body, "evShare", ev))


def _share(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if type(value) not in (int, float) or not 0.0 <= value <= 1.0:
        raise RequestError(f"{name} must be a number in [0, 1], not {value!r}")
    return float(value)


def _positive_int(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name, DEFAULTS[name])
    if type(value) is float and value.is_integer():
        value = int(value)  # JSON has one number type: 500.0 is 500
    if type(value) is not int:
        raise RequestError(f"{name} must be an integer, not {value!r}")
    if value <= 0:
        raise RequestError(f"{name} must be greater than 0, not {value}")
    return value


def _clamped(body: Mapping[str, Any], name: str, low: int, high: int, warnings: list[str]) -> int:
    value = _positive_int(body, name)
    if value > high:
        warnings.append(f"{name} {value} is above the cap {high}; clamped to {high}")
        return high
    if value < low:
        warnings.append(f"{name} {value} is below the minimum {low}; clamped to {low}")
        return low
    return value


def _read_at(body: Mapping[str, Any], now: datetime) -> datetime:
    if "readAt" not in body:
        return now
    raw = body["readAt"]
    try:
        moment = parse_utc("readAt", raw)
    except OutOfRange as error:
        raise ImplausibleRequest(str(error)) from None
    except ValueError as error:
        raise RequestError(str(error)) from None
    if moment > now:
        raise ImplausibleRequest(f"readAt {raw} is in the future; meters report what has happened")
    return moment
