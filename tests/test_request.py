"""publish-once bodies: defaults, clamps with warnings, and every malformed class."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gridlens.settings import Caps, MixDefaults
from producer.diversity import FleetMix
from producer.request import RequestError, parse_publish_request

NOW = datetime(2026, 11, 26, 12, 7, 30, tzinfo=UTC)


def parse(caps: Caps | None = None, **body: Any) -> Any:
    return parse_publish_request({"tenantId": "DEMO_TENANT", **body}, caps or Caps(), NOW)


def test_defaults_follow_the_spec() -> None:
    request = parse()
    assert (
        request.interval_minutes,
        request.batch_size,
        request.meter_count,
        request.feeder_count,
        request.dry_run,
    ) == (15, 500, 500, 25, False)
    assert request.read_at == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert request.warnings == ()


@pytest.mark.parametrize(
    ("body", "field", "value", "warning"),
    [
        ({"batchSize": 501}, "batch_size", 500, "batchSize 501 is above the cap 500; clamped"),
        ({"meterCount": 30_000}, "meter_count", 25_000, "meterCount 30000 is above the cap"),
        ({"feederCount": 5}, "feeder_count", 10, "feederCount 5 is below the minimum 10"),
        ({"feederCount": 41}, "feeder_count", 40, "feederCount 41 is above the cap 40"),
    ],
)
def test_numbers_beyond_a_cap_are_clamped_with_a_warning(
    body: dict[str, Any], field: str, value: int, warning: str
) -> None:
    request = parse(**body)
    assert getattr(request, field) == value
    assert len(request.warnings) == 1 and request.warnings[0].startswith(warning)


def test_lowered_caps_clamp_lower() -> None:
    request = parse(Caps(batch_size=200, meter_count=1_000), batchSize=500, meterCount=5_000)
    assert (request.batch_size, request.meter_count) == (200, 1_000)


def test_a_batch_never_exceeds_what_the_rate_cap_admits() -> None:
    assert parse(Caps(reads_per_second=100), batchSize=500).batch_size == 100


def test_an_explicit_read_at_is_aligned_down() -> None:
    request = parse(readAt="2026-11-25T10:59:59+01:00", intervalMinutes=60)
    assert request.read_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_integral_floats_are_integers() -> None:
    assert parse(batchSize=250.0).batch_size == 250


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tenantId": None}, "tenantId is required"),
        ({"tenantId": "DEMO-TENANT"}, "tenantId must match"),
        ({"tenantId": "x" * 65}, "tenantId must match"),
        ({"tenantId": 7}, "tenantId must match"),
        ({"colour": "red"}, "unknown field(s): colour"),
        ({"meterCount": "25000"}, "meterCount must be an integer, not '25000'"),
        ({"meterCount": 2.5}, "meterCount must be an integer, not 2.5"),
        ({"meterCount": True}, "meterCount must be an integer, not True"),
        ({"meterCount": None}, "meterCount must be an integer, not None"),
        ({"meterCount": 0}, "meterCount must be greater than 0, not 0"),
        ({"batchSize": -5}, "batchSize must be greater than 0"),
        ({"feederCount": [25]}, "feederCount must be an integer"),
        ({"intervalMinutes": 10}, "intervalMinutes must be one of 5, 15, 30, 60, not 10"),
        ({"intervalMinutes": 0}, "intervalMinutes must be greater than 0"),
        ({"dryRun": "yes"}, "dryRun must be true or false"),
        ({"dryRun": 1}, "dryRun must be true or false"),
        ({"readAt": "soon"}, "readAt is not an ISO-8601 timestamp"),
        ({"readAt": "2026-11-26T10:00:00"}, "readAt needs a UTC offset or Z"),
        ({"readAt": 1764151200}, "readAt must be an ISO-8601 string"),
        ({"readAt": "2026-11-27T10:00:00Z"}, "readAt 2026-11-27T10:00:00Z is in the future"),
    ],
)
def test_malformed_input_names_what_is_wrong(body: dict[str, Any], message: str) -> None:
    full = {"tenantId": "DEMO_TENANT", **body}
    if body.get("tenantId", "") is None:
        del full["tenantId"]
    with pytest.raises(RequestError) as raised:
        parse_publish_request(full, Caps(), NOW)
    assert str(raised.value).startswith(message)


def test_pv_and_ev_shares_come_from_the_body_else_the_tenant_else_the_deployment() -> None:
    defaults = MixDefaults(pv_share=0.04, ev_share=0.02, by_tenant={"SUNNY": (0.3, 0.1)})
    assert parse().mix == FleetMix()  # no defaults given: no PV, no EV
    body = {"tenantId": "DEMO_TENANT"}
    assert parse_publish_request(body, Caps(), NOW, defaults).mix == FleetMix(0.04, 0.02)
    sunny = {"tenantId": "SUNNY"}
    assert parse_publish_request(sunny, Caps(), NOW, defaults).mix == FleetMix(0.3, 0.1)
    named = {**sunny, "pvShare": 0.5, "evShare": 0}
    assert parse_publish_request(named, Caps(), NOW, defaults).mix == FleetMix(0.5, 0.0)
    assert parse(pvShare=1).mix == FleetMix(1.0, 0.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pvShare": 1.5}, "pvShare must be a number in [0, 1], not 1.5"),
        ({"pvShare": -0.1}, "pvShare must be a number in [0, 1], not -0.1"),
        ({"evShare": "0.1"}, "evShare must be a number in [0, 1], not '0.1'"),
        ({"evShare": True}, "evShare must be a number in [0, 1], not True"),
        ({"pvShare": None}, "pvShare must be a number in [0, 1], not None"),
    ],
)
def test_a_share_outside_0_to_1_is_malformed(body: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse(**body)
    assert str(raised.value) == message
