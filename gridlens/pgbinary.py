"""PostgreSQL binary arrays to and from numpy, not element by element.

psycopg dumps a Python list one element at a time; for a 500-read job that is
1,500 calls and most of a consumer's CPU, and loads an array as a list of Python
floats. The binary array format is simple enough to build and read in one go: a
header (dimensions, null flag, element type, then a length and a lower bound per
dimension), then each element as a 4-byte length and its bytes, all big-endian
(PostgreSQL, src/backend/utils/adt/arrayfuncs.c: array_send).
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

FLOAT8_OID: Final = 701
FLOAT8_ARRAY_OID: Final = 1022
INT8_ARRAY_OID: Final = 1016
TEXT_OID: Final = 25
TEXT_ARRAY_OID: Final = 1009
_HEADER = struct.Struct(">iiIii")  # ndim, has nulls, element oid, length, lower bound
_ARRAY = struct.Struct(">iiI")  # ndim, has nulls, element oid
_DIMENSION = struct.Struct(">ii")  # length, lower bound
_FLOAT8_ELEMENT = np.dtype([("length", ">i4"), ("value", ">f8")])
_INT8_ELEMENT = np.dtype([("length", ">i4"), ("value", ">i8")])
_DIGITS = 5  # meter numbers are zero-padded to five digits (SPEC §3)
_POWERS = 10 ** np.arange(_DIGITS - 1, -1, -1, dtype=np.int64)


class Float8Array(bytes):
    """A float8[] in PostgreSQL's binary format."""


class TextArray(bytes):
    """A text[] in PostgreSQL's binary format."""


def float8_array(values: npt.ArrayLike) -> Float8Array:
    """float8[] of the values, of their shape (NaN stays NaN: no element is NULL)."""
    matrix = np.asarray(values, dtype=np.float64)
    elements = np.empty(matrix.size, dtype=_FLOAT8_ELEMENT)
    elements["length"] = 8
    elements["value"] = matrix.reshape(-1)
    header = _ARRAY.pack(matrix.ndim, 0, FLOAT8_OID) + b"".join(
        _DIMENSION.pack(length, 1) for length in matrix.shape
    )
    return Float8Array(header + elements.tobytes())


def load_float8_array(data: Any) -> npt.NDArray[np.float64]:
    """A float8[] without NULL elements (array_replace(..., NULL, 'NaN') first) as numpy."""
    return _load_array(data, _FLOAT8_ELEMENT).astype(np.float64)


def load_int8_array(data: Any) -> npt.NDArray[np.int64]:
    """A bigint[] without NULL elements as numpy."""
    return _load_array(data, _INT8_ELEMENT).astype(np.int64)


def _load_array(data: Any, element: np.dtype[Any]) -> npt.NDArray[Any]:
    """The values of an array of 8-byte elements, big-endian, in its shape."""
    buffer = memoryview(data)
    ndim, _, _ = _ARRAY.unpack_from(buffer)  # the null flag: a null bitmap, maybe all set
    shape = [_DIMENSION.unpack_from(buffer, _ARRAY.size + 8 * d)[0] for d in range(ndim)]
    elements = np.frombuffer(buffer, dtype=element, offset=_ARRAY.size + 8 * ndim)
    if len(elements) != np.prod(shape) or (elements["length"] != 8).any():
        raise ValueError("an array with NULL elements: replace them (with NaN) in the query")
    return elements["value"].reshape(shape)


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
    if len(numbers) and numbers.max() >= 10**_DIGITS:  # wider ids: element by element
        return _text_array([prefix + f"{n:05d}".encode() for n in numbers.tolist()])
    header = _HEADER.pack(1, 0, TEXT_OID, len(numbers), 1)
    width = len(prefix) + _DIGITS
    rows = np.empty((len(numbers), 4 + width), dtype=np.uint8)
    rows[:, :4] = np.frombuffer(struct.pack(">i", width), dtype=np.uint8)
    rows[:, 4 : 4 + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rows[:, 4 + len(prefix) :] = (numbers[:, None] // _POWERS) % 10 + ord("0")
    return TextArray(header + rows.tobytes())


def text_array(values: list[str]) -> TextArray:
    """text[] of the strings (psycopg dumps a list of 25,000 strings in about 0.1 s)."""
    return _text_array([value.encode() for value in values])


def _text_array(elements: list[bytes]) -> TextArray:
    header = _HEADER.pack(1, 0, TEXT_OID, len(elements), 1)
    return TextArray(header + b"".join(struct.pack(">i", len(e)) + e for e in elements))


class _BinaryArrayDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _Float8ArrayDumper(_BinaryArrayDumper):
    oid = FLOAT8_ARRAY_OID


class _TextArrayDumper(_BinaryArrayDumper):
    oid = TEXT_ARRAY_OID


class _Float8ArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> npt.NDArray[np.float64]:
        return load_float8_array(data)


class _Int8ArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> npt.NDArray[np.int64]:
        return load_int8_array(data)


def register(adapters: psycopg.adapt.AdaptersMap) -> None:
    adapters.register_dumper(Float8Array, _Float8ArrayDumper)
    adapters.register_dumper(TextArray, _TextArrayDumper)


def register_numpy_loader(adapters: psycopg.adapt.AdaptersMap) -> None:
    """float8[] and bigint[] results, fetched in binary, as numpy arrays (for one
    cursor's adapters)."""
    adapters.register_loader(FLOAT8_ARRAY_OID, _Float8ArrayLoader)
    adapters.register_loader(INT8_ARRAY_OID, _Int8ArrayLoader)
