"""The stream entry: one versioned, columnar orjson document per job.

A job is the reads of up to 500 meters of one feeder at one interval. Meter ids
are derived (SPEC §3), so the entry carries meter numbers, not id strings:

    {"v": 1, "publishId": "...", "tenantId": "DEMO", "feederId": "FEEDER_3",
     "readAt": 1764201600, "intervalMinutes": 15,
     "meters": [3, 28, ...], "kwh": [0.41, ...], "voltage": [121.3, ...]}

Decoding validates everything, so a malformed entry is an :class:`EntryError`
that the consumer dead-letters, never a crash or a bad row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from gridlens.settings import HARD_MAX_BATCH_SIZE

ENTRY_VERSION: Final = 1
ENTRY_FIELD: Final = b"batch"  # the stream entry's one field
INTERVALS_MINUTES: Final = frozenset({5, 15, 30, 60})
MAX_METER_NUMBER: Final = 999_999
TENANT_PATTERN: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")
FEEDER_PATTERN: Final = re.compile(r"^FEEDER_[1-9][0-9]{0,2}$")
_KEYS: Final = frozenset(
    {
        "v",
        "publishId",
        "tenantId",
        "feederId",
        "readAt",
        "intervalMinutes",
        "meters",
        "kwh",
        "voltage",
    }
)


class EntryError(ValueError):
    """A stream entry that is not a valid read batch."""


def meter_id(tenant_id: str, meter_number: int) -> str:
    return f"{tenant_id}-MTR-{meter_number:05d}"


@dataclass(frozen=True, slots=True)
class ReadBatch:
    publish_id: str
    tenant_id: str
    feeder_id: str
    read_at: datetime  # UTC, on an interval boundary
    interval_minutes: int
    meter_numbers: Sequence[int] | npt.NDArray[np.int64]
    kwh: Sequence[float] | npt.NDArray[np.float64]
    voltage: Sequence[float] | npt.NDArray[np.float64]

    def meter_ids(self) -> list[str]:
        tenant = self.tenant_id
        return [meter_id(tenant, number) for number in self.meter_numbers]

    def __len__(self) -> int:
        return len(self.meter_numbers)


def encode(batch: ReadBatch) -> bytes:
    return orjson.dumps(
        {
            "v": ENTRY_VERSION,
            "publishId": batch.publish_id,
            "tenantId": batch.tenant_id,
            "feederId": batch.feeder_id,
            "readAt": int(batch.read_at.timestamp()),
            "intervalMinutes": batch.interval_minutes,
            "meters": batch.meter_numbers,
            "kwh": batch.kwh,
            "voltage": batch.voltage,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def decode(raw: bytes) -> ReadBatch:
    """The batch of one entry, or EntryError saying what is wrong with it."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EntryError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise EntryError("not a JSON object")
    if document.get("v") != ENTRY_VERSION:
        raise EntryError(f"unsupported entry version {document.get('v')!r}")
    if set(document) != _KEYS:
        raise EntryError(f"fields differ from v{ENTRY_VERSION}: {sorted(set(document) ^ _KEYS)}")
    tenant_id = _text(document, "tenantId", TENANT_PATTERN)
    feeder_id = _text(document, "feederId", FEEDER_PATTERN)
    interval = document["intervalMinutes"]
    if type(interval) is not int or interval not in INTERVALS_MINUTES:
        raise EntryError(f"intervalMinutes {interval!r} is not one of 5, 15, 30, 60")
    read_at = document["readAt"]
    if type(read_at) is not int or read_at <= 0 or read_at % (interval * 60):
        raise EntryError(f"readAt {read_at!r} is not an interval boundary in epoch seconds")
    publish_id = document["publishId"]
    if not isinstance(publish_id, str) or not 0 < len(publish_id) <= 64:
        raise EntryError("publishId must be a string of 1 to 64 characters")
    meters, kwh, voltage = document["meters"], document["kwh"], document["voltage"]
    numbers, kwh_values, voltages = _checked_columns(meters, kwh, voltage)
    return ReadBatch(
        publish_id=publish_id,
        tenant_id=tenant_id,
        feeder_id=feeder_id,
        read_at=datetime.fromtimestamp(read_at, UTC),
        interval_minutes=interval,
        meter_numbers=numbers.astype(np.int64, copy=False),
        kwh=kwh_values.astype(np.float64, copy=False),
        voltage=voltages.astype(np.float64, copy=False),
    )


def _text(document: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = document[key]
    if not isinstance(value, str) or not pattern.match(value):
        raise EntryError(f"{key} {value!r} does not match {pattern.pattern}")
    return value


def _checked_columns(meters: Any, kwh: Any, voltage: Any) -> tuple[np.ndarray[Any, Any], ...]:
    if not all(isinstance(column, list) for column in (meters, kwh, voltage)):
        raise EntryError("meters, kwh and voltage must be arrays")
    if not 0 < len(meters) <= HARD_MAX_BATCH_SIZE:
        raise EntryError(f"a batch holds 1 to {HARD_MAX_BATCH_SIZE} meters, not {len(meters)}")
    if not len(meters) == len(kwh) == len(voltage):
        raise EntryError("meters, kwh and voltage differ in length")
    numbers = _numeric(meters, "meters", kinds="i")
    kwh_values = _numeric(kwh, "kwh", kinds="if")
    voltages = _numeric(voltage, "voltage", kinds="if")
    if numbers.min() < 1 or numbers.max() > MAX_METER_NUMBER:
        raise EntryError(f"meter numbers must be integers in 1..{MAX_METER_NUMBER}")
    if len(np.unique(numbers)) != len(numbers):
        raise EntryError("a meter appears twice in one batch")
    if not np.isfinite(kwh_values).all() or kwh_values.min() < 0:
        raise EntryError("kwh values must be finite and not negative")
    if not np.isfinite(voltages).all() or voltages.min() <= 0 or voltages.max() > 1_000:
        raise EntryError("voltage values must be finite, in (0, 1000]")
    return numbers, kwh_values, voltages


def _numeric(column: list[Any], name: str, *, kinds: str) -> np.ndarray[Any, Any]:
    try:
        values = np.array(column)
    except (ValueError, OverflowError):
        values = np.array([], dtype=object)
    if values.ndim != 1 or values.dtype.kind not in kinds:
        expected = "integers" if kinds == "i" else "numbers"
        raise EntryError(f"{name} must be an array of {expected}")
    return values
