"""The stream entry format: round trip and validation of malformed entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from gridlens.entry import EntryError, ReadBatch, decode, encode

READ_AT = datetime(2026, 11, 26, 12, 15, tzinfo=UTC)


def batch(**changes: Any) -> ReadBatch:
    fields: dict[str, Any] = {
        "publish_id": "p1",
        "tenant_id": "DEMO_TENANT",
        "feeder_id": "FEEDER_3",
        "read_at": READ_AT,
        "interval_minutes": 15,
        "meter_numbers": [3, 28, 53],
        "kwh": [0.25, 0.0, 1.5],
        "voltage": [120.1, 119.8, 121.0],
        "kwh_received": [0.0, 0.75, 0.0],
    }
    fields.update(changes)
    return ReadBatch(**fields)


def columns(read_batch: ReadBatch) -> tuple[Any, ...]:
    return (
        read_batch.publish_id,
        read_batch.tenant_id,
        read_batch.feeder_id,
        read_batch.read_at,
        read_batch.interval_minutes,
        list(read_batch.meter_numbers),
        list(read_batch.kwh),
        list(read_batch.voltage),
        list(read_batch.received()),
    )


def test_a_batch_survives_the_round_trip() -> None:
    decoded = decode(encode(batch()))
    assert columns(decoded) == columns(batch())
    assert decoded.meter_ids() == [
        "DEMO_TENANT-MTR-00003",
        "DEMO_TENANT-MTR-00028",
        "DEMO_TENANT-MTR-00053",
    ]


def test_the_same_batch_encodes_to_the_same_bytes() -> None:
    assert encode(batch()) == encode(batch())


def test_a_one_meter_progression_may_carry_any_step() -> None:
    raw = document(
        meters={"first": 7, "step": 2**63, "count": 1}, kwh=[1], voltage=[1200], kwhReceived=[0]
    )
    assert list(decode(raw).meter_numbers) == [7]


def test_a_feeders_meters_travel_as_a_progression_and_values_as_integers() -> None:
    body = orjson.loads(encode(batch()))
    assert body["meters"] == {"first": 3, "step": 25, "count": 3}
    assert body["kwh"] == [2500, 0, 15000] and body["voltage"] == [1201, 1198, 1210]
    assert body["kwhReceived"] == [0, 7500, 0] and body["v"] == 2
    irregular = batch(meter_numbers=[3, 28, 78])
    assert orjson.loads(encode(irregular))["meters"] == [3, 28, 78]
    assert list(decode(encode(irregular)).meter_numbers) == [3, 28, 78]


def document(**changes: Any) -> bytes:
    body = orjson.loads(encode(batch()))
    body.update(changes)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (document(v=3), "unsupported entry version 3"),
        (document(v="2"), "unsupported entry version '2'"),
        (document(kwhReceived=...), "fields differ from v2"),
        (document(kwhReceived=None), "kwhReceived must be an array"),
        (document(kwhReceived=[0, 1]), "meters and kwhReceived differ in length"),
        (document(kwhReceived=[0, 0.5, 1]), "kwhReceived must be an array of integers"),
        (document(kwhReceived=[0, -1, 1]), "kwhReceived values must not be negative"),
        (document(v=1), "fields differ from v1"),  # a v1 entry has no kwhReceived
        (document(extra=1), "fields differ"),
        (document(kwh=...), "fields differ"),
        (document(tenantId="bad tenant"), "tenantId"),
        (document(feederId="FEEDER_0"), "feederId"),
        (document(intervalMinutes=10), "intervalMinutes 10"),
        (document(readAt=1764159301), "not an interval boundary"),
        (document(meters=[]), "1 to 500 meters"),
        (
            document(meters=list(range(1, 502)), kwh=[0.1] * 501, voltage=[120.0] * 501),
            "1 to 500 meters",
        ),
        (document(meters=[1, 2]), "differ in length"),
        (document(meters=[1, 2, 2.5]), "meters must be an array of integers"),
        (document(meters=[1, 2, "3"]), "meters must be an array of integers"),
        (document(meters=[1, 2, 0]), "meter numbers must be integers in 1.."),
        (document(meters=[1, 2, 2]), "a meter appears twice"),
        (document(kwh=[1, "2", 3]), "kwh must be an array of integers"),
        (document(kwh=[1, 2.5, 3]), "kwh must be an array of integers"),
        (document(kwh=[1, -2, 3]), "must not be negative"),
        (document(voltage=[1200, 0, 1200]), "voltage values"),
        (document(meters={"first": 1, "step": 25}), "meters must be a list, or integers"),
        (document(meters={"first": 1, "step": 0, "count": 3}), "step 1 or more"),
        (document(meters={"first": 1, "step": 25, "count": 501}), "1 to 500 meters"),
        (document(meters={"first": 2**63, "step": 1, "count": 3}), "meter numbers must be"),
        (document(meters={"first": 0, "step": 1, "count": 3}), "meter numbers must be"),
        (document(meters={"first": 1, "step": 2**63, "count": 3}), "meter numbers must be"),
        (document(meters={"first": 1, "step": 25, "count": 2}), "differ in length"),
        (document(voltage="120"), "must be arrays"),
    ],
)
def test_a_malformed_entry_is_an_entry_error(raw: bytes, message: str) -> None:
    with pytest.raises(EntryError, match=message):
        decode(raw)


def test_a_batch_that_names_no_received_kwh_carries_zeros() -> None:
    plain = batch(kwh_received=())
    assert list(plain.received()) == [0.0, 0.0, 0.0]
    assert orjson.loads(encode(plain))["kwhReceived"] == [0, 0, 0]


def test_a_version_1_entry_still_decodes_with_nothing_received() -> None:
    """Entries written before the upgrade may still be pending: they mean delivered kWh."""
    body = orjson.loads(encode(batch()))
    del body["kwhReceived"]
    body["v"] = 1
    decoded = decode(orjson.dumps(body))
    assert list(decoded.kwh) == [0.25, 0.0, 1.5]
    assert list(decoded.received()) == [0.0, 0.0, 0.0]
    assert columns(decoded)[:-1] == columns(batch())[:-1]
