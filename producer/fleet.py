"""The fleet: meter and feeder ids, feeder assignment, interval alignment (SPEC §3).

There is no meters table: meter i of a tenant is ``{tenant}-MTR-{i:05d}``, on
feeder ``((i - 1) % feederCount) + 1``, for i = 1..meterCount.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from gridlens.entry import INTERVALS_MINUTES

IntArray = npt.NDArray[np.int64]
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def feeder_id(feeder: int) -> str:
    return f"FEEDER_{feeder}"


def feeder_of(meter_numbers: IntArray, feeder_count: int) -> IntArray:
    """The feeder number of each meter."""
    return (meter_numbers - 1) % feeder_count + 1


def feeder_meters(feeder: int, first: int, last: int, feeder_count: int) -> IntArray:
    """The meter numbers in first..last (inclusive) that are on ``feeder``, ascending."""
    offset = (feeder - first) % feeder_count
    return np.arange(first + offset, last + 1, feeder_count, dtype=np.int64)


def align_read_at(moment: datetime, interval_minutes: int) -> datetime:
    """The interval boundary at or before ``moment``, in UTC (naive times are UTC)."""
    if interval_minutes not in INTERVALS_MINUTES:
        raise ValueError(f"intervalMinutes must be one of 5, 15, 30, 60, not {interval_minutes}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int((moment - EPOCH).total_seconds() // 1)
    step = interval_minutes * 60
    return EPOCH + timedelta(seconds=seconds - seconds % step)


def epoch_minutes(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds()) // 60
