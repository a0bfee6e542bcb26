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


def document(**changes: Any) -> bytes:
    body = orjson.loads(encode(batch()))
    body.update(changes)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (document(v=2), "unsupported entry version 2"),
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
        (document(kwh=[0.1, "0.2", 0.3]), "kwh must be an array of numbers"),
        (document(kwh=[0.1, -0.2, 0.3]), "not negative"),
        (document(voltage=[120.0, 0.0, 120.0]), "voltage values"),
        (document(voltage="120"), "must be arrays"),
    ],
)
def test_a_malformed_entry_is_an_entry_error(raw: bytes, message: str) -> None:
    with pytest.raises(EntryError, match=message):
        decode(raw)
