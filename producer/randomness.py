"""Counter-based randomness: every draw is a hash of what it is about.

A value drawn for (tenant, purpose, meter, time) is the same whenever and
wherever it is computed: no global RNG state, no order dependence, and whole
arrays are drawn at once. The mixer is SplitMix64's finaliser (Steele, Lea &
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), applied
once per key component.
"""

from __future__ import annotations

import hashlib
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

UInt64Array = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL_1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL_2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 2.0**-53


class Stream(IntEnum):
    """What a draw is for; each purpose is an independent stream."""

    METER_SCALE = 1
    METER_SHIFT = 2
    METER_VOLTAGE = 3
    FEEDER_VOLTAGE = 4
    KWH_NOISE = 5
    VOLTAGE_NOISE = 6
    EXCURSION = 7
    EVENT_MEMBER = 9
    THEFT_ALPHA = 10
    THEFT_GAMMA = 11
    THEFT_WINDOW = 12
    BOX_MULLER = 13
    # Rooftop PV and EV charging (producer/diversity.py); 30 and above are kept for other work.
    PV_MEMBER = 20
    PV_SIZE = 21
    PV_ORIENTATION = 22
    SKY_DAY = 23
    SKY_INTERVAL = 24
    PV_NOISE = 25
    EV_MEMBER = 26
    EV_HABIT = 27
    EV_SESSION = 28
    VACANT_LOAD = 30


def text_seed(text: str) -> int:
    """A stable 64-bit seed for a string (a tenant id)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


_MASK = (1 << 64) - 1


def _mix(values: UInt64Array) -> UInt64Array:
    z = values + _GOLDEN
    z = (z ^ (z >> _S30)) * _MUL_1
    z = (z ^ (z >> _S27)) * _MUL_2
    result: UInt64Array = z ^ (z >> _S31)
    return result


def _mix_int(value: int) -> int:
    """_mix for one Python integer (no numpy scalar overflow warnings)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def hashes(seed: int, stream: int, *keys: Any) -> UInt64Array:
    """One 64-bit hash per element of the broadcast keys (integer arrays or scalars).

    Leading scalar keys are mixed in Python; the rest as whole arrays.
    """
    state: int | UInt64Array = _mix_int((seed ^ stream) & _MASK)
    for key in keys:
        if isinstance(state, int) and np.ndim(key) == 0:
            state = _mix_int(state ^ (int(key) & _MASK))
        else:
            part = (
                np.asarray(key).astype(np.uint64) if np.ndim(key) else np.uint64(int(key) & _MASK)
            )
            state = _mix(np.asarray(state, dtype=np.uint64) ^ part)
    if isinstance(state, int):
        return np.array([state], dtype=np.uint64)
    return state


def uniform(seed: int, stream: int, *keys: Any) -> FloatArray:
    """Uniform draws in [0, 1), one per element of the broadcast keys."""
    return (hashes(seed, stream, *keys) >> _S11).astype(np.float64) * _TO_UNIT


def fields(draws: UInt64Array, count: int) -> list[FloatArray]:
    """``count`` (at most 3) independent uniforms in [0, 1) from the 21-bit fields of
    each hash, when one draw must decide several things about the same key."""
    mask = np.uint64((1 << 21) - 1)
    return [
        ((draws >> np.uint64(21 * part)) & mask).astype(np.float64) * 2.0**-21
        for part in range(count)
    ]


def lognormal_noise(sigma: float, seed: int, stream: int, *keys: Any) -> FloatArray:
    """Multiplicative noise of mean 1: exp(σ·z − σ²/2), z standard normal."""
    result: FloatArray = np.exp(sigma * normal(seed, stream, *keys) - sigma**2 / 2)
    return result


def normal(seed: int, stream: int, *keys: Any) -> FloatArray:
    """Standard normal draws (Box–Muller on two hashes of the same key)."""
    h = hashes(seed, stream, *keys)
    u1 = 1.0 - (h >> _S11).astype(np.float64) * _TO_UNIT  # (0, 1]: log is finite
    u2 = (_mix(h ^ np.uint64(Stream.BOX_MULLER)) >> _S11).astype(np.float64) * _TO_UNIT
    result: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return result
