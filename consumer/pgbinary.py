"""PostgreSQL binary array parameters built with numpy, not element by element.

psycopg dumps a Python list one element at a time; for a 500-read job that is
1,500 calls and most of a consumer's CPU. The binary array format is simple
enough to build in one go: a header (dimensions, null flag, element type, length,
lower bound), then each element as a 4-byte length and its bytes, all big-endian
(PostgreSQL, src/backend/utils/adt/arrayfuncs.c: array_send).
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

FLOAT8_OID: Final = 701
FLOAT8_ARRAY_OID: Final = 1022
TEXT_OID: Final = 25
TEXT_ARRAY_OID: Final = 1009
_HEADER = struct.Struct(">iiIii")  # ndim, has nulls, element oid, length, lower bound
_FLOAT8_ELEMENT = np.dtype([("length", ">i4"), ("value", ">f8")])
_DIGITS = 5  # meter numbers are zero-padded to five digits (SPEC §3)
_POWERS = 10 ** np.arange(_DIGITS - 1, -1, -1, dtype=np.int64)


class Float8Array(bytes):
    """A float8[] in PostgreSQL's binary format."""


class TextArray(bytes):
    """A text[] in PostgreSQL's binary format."""


def float8_array(values: npt.ArrayLike) -> Float8Array:
    column = np.asarray(values, dtype=np.float64)
    elements = np.empty(len(column), dtype=_FLOAT8_ELEMENT)
    elements["length"] = 8
    elements["value"] = column
    header = _HEADER.pack(1, 0, FLOAT8_OID, len(column), 1)
    return Float8Array(header + elements.tobytes())


def meter_id_array(tenant_id: str, meter_numbers: npt.ArrayLike) -> TextArray:
    """text[] of ``{tenant}-MTR-{n:05d}`` for each meter number.

    A fleet's jobs hold the same meters every interval: the arrays are kept in a
    small cache.
    """
    numbers = np.ascontiguousarray(meter_numbers, dtype=np.int64)
    return _meter_id_array(tenant_id, numbers.tobytes())


@functools.lru_cache(maxsize=512)
def _meter_id_array(tenant_id: str, number_bytes: bytes) -> TextArray:
    numbers = np.frombuffer(number_bytes, dtype=np.int64)
    prefix = f"{tenant_id}-MTR-".encode()
    header = _HEADER.pack(1, 0, TEXT_OID, len(numbers), 1)
    if len(numbers) and numbers.max() >= 10**_DIGITS:  # wider ids: element by element
        ids = [prefix + f"{n:05d}".encode() for n in numbers.tolist()]
        return TextArray(header + b"".join(struct.pack(">i", len(i)) + i for i in ids))
    width = len(prefix) + _DIGITS
    rows = np.empty((len(numbers), 4 + width), dtype=np.uint8)
    rows[:, :4] = np.frombuffer(struct.pack(">i", width), dtype=np.uint8)
    rows[:, 4 : 4 + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rows[:, 4 + len(prefix) :] = (numbers[:, None] // _POWERS) % 10 + ord("0")
    return TextArray(header + rows.tobytes())


class _BinaryArrayDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _Float8ArrayDumper(_BinaryArrayDumper):
    oid = FLOAT8_ARRAY_OID


class _TextArrayDumper(_BinaryArrayDumper):
    oid = TEXT_ARRAY_OID


def register(adapters: psycopg.adapt.AdaptersMap) -> None:
    adapters.register_dumper(Float8Array, _Float8ArrayDumper)
    adapters.register_dumper(TextArray, _TextArrayDumper)
