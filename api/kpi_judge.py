"""Judging a tenant-day that is over: its features out of PostgreSQL as numpy arrays,
the verdicts of gridlens.verdicts, and back, in the refresh's transaction."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from gridlens import verdicts
from gridlens.pgbinary import float8_array, register, register_numpy_loader
from gridlens.sqlfiles import query

# Every reason list a verdict can hold, by its bits (gridlens.verdicts.REASONS).
_REASON_LISTS = [",".join(verdicts.reason_names(bits)) for bits in range(16)]


async def judge_day(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> int:
    """Make and store the verdict of one tenant-day's meters; return how many."""
    cursor = conn.cursor(binary=True)  # numpy arrays in and out, on this cursor only
    register(cursor.adapters)
    register_numpy_loader(cursor.adapters)
    row = await (await cursor.execute(query("judge_inputs"), params)).fetchone()
    if row is None or row[0] is None:
        return 0
    meter_ids, feeder_ids, *columns = row
    day, earlier = _inputs(feeder_ids, columns)
    made = verdicts.judge(day, earlier)
    await cursor.execute(
        query("store_verdicts"),
        {
            **params,
            "meter_ids": meter_ids,
            "baseline": float8_array(made.baseline.reshape(-1)),
            "baseline_days": float8_array(made.baseline_days),
            "own_ratio": float8_array(made.own_ratio),
            "own_corr": float8_array(made.own_corr),
            "own_error": float8_array(made.own_error),
            "peer_ratio": float8_array(made.peer_ratio),
            "peer_rank": float8_array(made.peer_rank),
            "near_zero": float8_array(made.near_zero),
            "generator": float8_array(made.generator),
            "reasons": [_REASON_LISTS[bits] for bits in made.reasons.tolist()],
        },
    )
    return len(meter_ids)


# The columns of judge_inputs after the meter and feeder ids, in order.
_DAY_COLUMNS = (
    "reads", "interval_minutes", "kwh_per_read", "zero_reads", "variation", "peer_corr",
    "exported", "metered", "peer", "sunlit",
)  # fmt: skip
_EARLIER_COLUMNS = (
    "found", "baseline", "baseline_days", "generator", "completeness", "near_zero",
    "suspected", "peer_ratio", "own_corr", "peer_rank", "hour_kwh", "hour_peer",
)  # fmt: skip
_FLAGS = {"exported", "sunlit", "found", "generator", "near_zero", "suspected"}  # as 1 or 0


def _inputs(
    feeder_ids: list[str], columns: list[np.ndarray]
) -> tuple[verdicts.MeterDays, verdicts.Earlier]:
    named = dict(zip(_DAY_COLUMNS + _EARLIER_COLUMNS, columns, strict=True))
    values = {name: column == 1 if name in _FLAGS else column for name, column in named.items()}
    _, feeder = np.unique(np.asarray(feeder_ids, dtype=object), return_inverse=True)
    day = verdicts.MeterDays(
        feeder=feeder.astype(np.int64), **{name: values[name] for name in _DAY_COLUMNS}
    )
    earlier = verdicts.Earlier(**{name: values[name] for name in _EARLIER_COLUMNS})
    return day, earlier
