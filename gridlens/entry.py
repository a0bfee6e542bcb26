"""The stream entry: one versioned, compact, columnar orjson document per job.

A job is the reads of up to 500 meters of one feeder at one interval:

    {"v": 2, "publishId": "...", "tenantId": "DEMO", "feederId": "FEEDER_3",
     "readAt": 1764201600, "intervalMinutes": 15,
     "meters": {"first": 3, "step": 25, "count": 500},
     "kwh": [4123, ...], "kwhReceived": [0, ...], "voltage": [1213, ...]}

``kwh`` is the energy delivered to the premises, ``kwhReceived`` the energy received from
it (rooftop PV exporting): the two channels a net meter registers. Version 1 entries, which
have no ``kwhReceived``, still decode (received 0): entries can be pending across an upgrade.
A version 2 entry may carry ``"late": true``: reads a meter kept through a comms outage and
delivers after it (a buffered outage), stored marked late.

Compact, since the queue's memory is the entries waiting in it:
* meter ids are derived (SPEC §3), so the entry carries meter numbers; the meters
  of one feeder are an arithmetic progression, sent as first/step/count (a list
  of numbers is accepted too, e.g. after a comms outage removed some);
* kWh (both channels) travels as an integer count of 0.1 Wh (KWH_SCALE) and voltage of 0.1 V
  (VOLTAGE_SCALE): the resolution of the emulator's rounded reads, so decoding
  gives exactly the rounded value.

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

from gridlens.errors import GridLensError
from gridlens.settings import HARD_MAX_BATCH_SIZE

ENTRY_VERSION: Final = 2
ENTRY_FIELD: Final = b"batch"  # the stream entry's one field
KWH_SCALE: Final = 10_000  # kWh are sent as integers of 0.0001 kWh
VOLTAGE_SCALE: Final = 10  # volts are sent as integers of 0.1 V
INTERVALS_MINUTES: Final = frozenset({5, 15, 30, 60})
MAX_METER_NUMBER: Final = 999_999
TENANT_PATTERN: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")
FEEDER_PATTERN: Final = re.compile(r"^FEEDER_[1-9][0-9]{0,2}$")
_V1_KEYS: Final = frozenset(
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
_KEYS: Final = {1: _V1_KEYS, 2: _V1_KEYS | {"kwhReceived"}}  # the fields of each version
_OPTIONAL_KEYS: Final = {1: frozenset(), 2: frozenset({"late"})}


class EntryError(GridLensError, ValueError):
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
    kwh: Sequence[float] | npt.NDArray[np.float64]  # delivered
    voltage: Sequence[float] | npt.NDArray[np.float64]
    kwh_received: Sequence[float] | npt.NDArray[np.float64] = ()  # empty: none received
    late: bool = False  # delivered after the interval it was read in (a buffered outage)

    def received(self) -> npt.NDArray[np.float64]:
        """kWh received of each read (zeros when the batch carries none)."""
        if len(self.kwh_received) == 0:
            return np.zeros(len(self.meter_numbers))
        return np.asarray(self.kwh_received, dtype=np.float64)

    def meter_ids(self) -> list[str]:
        tenant = self.tenant_id
        return [meter_id(tenant, number) for number in self.meter_numbers]

    def __len__(self) -> int:
        return len(self.meter_numbers)


def encode(batch: ReadBatch) -> bytes:
    late = {"late": True} if batch.late else {}
    return orjson.dumps(
        {
            **late,
            "v": ENTRY_VERSION,
            "publishId": batch.publish_id,
            "tenantId": batch.tenant_id,
            "feederId": batch.feeder_id,
            "readAt": int(batch.read_at.timestamp()),
            "intervalMinutes": batch.interval_minutes,
            "meters": _meters_json(np.asarray(batch.meter_numbers, dtype=np.int64)),
            "kwh": np.rint(np.asarray(batch.kwh) * KWH_SCALE).astype(np.int64),
            "kwhReceived": np.rint(batch.received() * KWH_SCALE).astype(np.int64),
            "voltage": np.rint(np.asarray(batch.voltage) * VOLTAGE_SCALE).astype(np.int64),
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _meters_json(numbers: npt.NDArray[np.int64]) -> Any:
    """first/step/count for an arithmetic progression, else the list of numbers."""
    if len(numbers) >= 2:
        steps = np.diff(numbers)
        if steps[0] > 0 and (steps == steps[0]).all():
            return {"first": int(numbers[0]), "step": int(steps[0]), "count": len(numbers)}
    return numbers


def decode(raw: bytes) -> ReadBatch:
    """The batch of one entry, or EntryError saying what is wrong with it."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EntryError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise EntryError("not a JSON object")
    version = document.get("v")
    if type(version) is not int or version not in _KEYS:
        raise EntryError(f"unsupported entry version {version!r}")
    if set(document) - _OPTIONAL_KEYS[version] != _KEYS[version]:
        difference = sorted((set(document) - _OPTIONAL_KEYS[version]) ^ _KEYS[version])
        raise EntryError(f"fields differ from v{version}: {difference}")
    late = document.get("late", False)
    if late is not True and late is not False:
        raise EntryError(f"late must be true or false, not {late!r}")
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
    meters = _meter_numbers(document["meters"])
    kwh, voltage = document["kwh"], document["voltage"]
    numbers, kwh_values, voltages = _checked_columns(meters, kwh, voltage)
    received = (
        _received(document["kwhReceived"], len(numbers))
        if version >= 2
        else np.zeros(len(numbers), dtype=np.int64)  # v1: nothing received
    )
    return ReadBatch(
        publish_id=publish_id,
        tenant_id=tenant_id,
        feeder_id=feeder_id,
        read_at=datetime.fromtimestamp(read_at, UTC),
        interval_minutes=interval,
        meter_numbers=numbers.astype(np.int64, copy=False),
        kwh=kwh_values / KWH_SCALE,
        voltage=voltages / VOLTAGE_SCALE,
        kwh_received=received / KWH_SCALE,
        late=late,
    )


def _received(column: Any, meters: int) -> np.ndarray[Any, Any]:
    """The kwhReceived column, checked like kwh."""
    if not isinstance(column, list):
        raise EntryError("kwhReceived must be an array")
    if len(column) != meters:
        raise EntryError("meters and kwhReceived differ in length")
    values = _numeric(column, "kwhReceived", kinds="i")
    if values.min() < 0:
        raise EntryError("kwhReceived values must not be negative")
    return values


def _text(document: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = document[key]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise EntryError(f"{key} {value!r} does not match {pattern.pattern}")
    return value


def _meter_numbers(meters: Any) -> Any:
    if not isinstance(meters, dict):
        return meters
    if set(meters) != {"first", "step", "count"} or not all(
        type(value) is int for value in meters.values()
    ):
        raise EntryError("meters must be a list, or integers first, step and count")
    if not 0 < meters["count"] <= HARD_MAX_BATCH_SIZE or meters["step"] < 1:
        raise EntryError(f"a batch holds 1 to {HARD_MAX_BATCH_SIZE} meters, step 1 or more")
    first, step, count = meters["first"], meters["step"], meters["count"]
    last = first + step * (count - 1)
    if not (first >= 1 and last <= MAX_METER_NUMBER):  # also keeps them within int64
        raise EntryError(f"meter numbers must be integers in 1..{MAX_METER_NUMBER}")
    # A one-meter batch may carry any step: keep it within int64 too.
    return np.arange(first, last + 1, min(step, MAX_METER_NUMBER), dtype=np.int64)


def _checked_columns(meters: Any, kwh: Any, voltage: Any) -> tuple[np.ndarray[Any, Any], ...]:
    if not isinstance(meters, list | np.ndarray) or not all(
        isinstance(column, list) for column in (kwh, voltage)
    ):
        raise EntryError("meters, kwh and voltage must be arrays")
    if not 0 < len(meters) <= HARD_MAX_BATCH_SIZE:
        raise EntryError(f"a batch holds 1 to {HARD_MAX_BATCH_SIZE} meters, not {len(meters)}")
    if not len(meters) == len(kwh) == len(voltage):
        raise EntryError("meters, kwh and voltage differ in length")
    numbers = _numeric(meters, "meters", kinds="i")
    kwh_values = _numeric(kwh, "kwh", kinds="i")
    voltages = _numeric(voltage, "voltage", kinds="i")
    if numbers.min() < 1 or numbers.max() > MAX_METER_NUMBER:
        raise EntryError(f"meter numbers must be integers in 1..{MAX_METER_NUMBER}")
    if isinstance(meters, list) and len(numbers) > 1 and (np.diff(np.sort(numbers)) == 0).any():
        raise EntryError("a meter appears twice in one batch")  # a progression cannot repeat
    if kwh_values.min() < 0:
        raise EntryError("kwh values must not be negative")
    if voltages.min() <= 0 or voltages.max() > 1_000 * VOLTAGE_SCALE:
        raise EntryError("voltage values must be in (0, 1000] volts")
    return numbers, kwh_values, voltages


def _numeric(column: Any, name: str, *, kinds: str) -> np.ndarray[Any, Any]:
    try:
        values = np.asarray(column)
    except (ValueError, OverflowError):
        values = np.array([], dtype=object)
    if values.ndim != 1 or values.dtype.kind not in kinds:
        expected = "integers" if kinds == "i" else "numbers"
        raise EntryError(f"{name} must be an array of {expected}")
    return values
