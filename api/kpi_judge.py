"""Judging a tenant-day that is over: its features out of PostgreSQL as numpy arrays,
the verdicts of gridlens.verdicts, and features and verdicts back in one write, in the
refresh's transaction."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from gridlens import verdicts
from gridlens.pgbinary import float8_array, register, register_numpy_loader
from gridlens.sqlfiles import query

HOURS = 24

# Every reason list a verdict can hold, by its bits (gridlens.verdicts.REASONS).
_REASON_LISTS = [",".join(verdicts.reason_names(bits)) for bits in range(16)]


async def judge_day(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any], from_hours: bool
) -> int:
    """Make and store the features and verdict of one tenant-day's meters; return how
    many. The features come from the day's hour rows (``from_hours``: they changed, or the
    day was never judged), or as stored (an earlier day's verdict changed)."""
    cursor = conn.cursor(binary=True)  # numpy arrays in and out, on this cursor only
    register(cursor.adapters)
    register_numpy_loader(cursor.adapters)
    features = query("day_features" if from_hours else "stored_day")
    row = await (await cursor.execute(features, params)).fetchone()
    if row is None or row[0] is None:
        return 0
    meter_ids, feeder_ids, *columns = row
    day = _day(feeder_ids, columns, from_hours)
    earlier = await cursor.execute(query("earlier_days"), {**params, "meter_ids": meter_ids})
    made = verdicts.judge(day, _earlier((await earlier.fetchone()) or ()))
    await cursor.execute(query("store_days"), _stored(params, meter_ids, feeder_ids, day, made))
    return len(meter_ids)


def _day(feeder_ids: list[str], columns: list[Any], from_hours: bool) -> verdicts.MeterDays:
    """The day's features: per meter (day_features, stored_day), then its hours, either
    per hour row with its slot (day_features) or as rows of 24."""
    reads, interval_minutes, kwh_per_read, zero_reads, variation, peer_corr, exported, *hours = (
        columns
    )
    if from_hours:  # two rows of a meter's hour: kWh added (to 0.1 Wh again), export or-ed
        slots, kwh, peer_kwh, exporting = hours
        at, meters = slots.astype(np.int64), len(feeder_ids)
        hours = [
            np.round(_scattered(meters, at, kwh, np.add), 4),
            _scattered(meters, at, peer_kwh, np.add),
            _scattered(meters, at, exporting, np.maximum),
        ]
    metered, peer, sunlit = hours
    _, feeder = np.unique(np.asarray(feeder_ids, dtype=object), return_inverse=True)
    return verdicts.MeterDays(
        feeder=feeder.astype(np.int64),
        reads=reads,
        interval_minutes=interval_minutes,
        kwh_per_read=kwh_per_read,
        zero_reads=zero_reads,
        variation=variation,
        peer_corr=peer_corr,
        exported=exported == 1,
        metered=metered,
        peer=peer,
        sunlit=sunlit == 1,
    )


def _scattered(
    meters: int, slots: npt.NDArray[np.int64], values: Any, add: Any
) -> npt.NDArray[np.float64]:
    """(meters, 24) of NaN, but the values in their slots (meter * 24 + hour); two values
    in one slot (a meter that moved feeder within the hour) joined by ``add``."""
    matrix = np.zeros(meters * HOURS)
    add.at(matrix, slots, values)
    counted = np.bincount(slots, minlength=meters * HOURS)
    return np.where(counted > 0, matrix, np.nan).reshape(meters, HOURS)


def _earlier(columns: Any) -> verdicts.Earlier:
    """earlier_days' arrays, in order (1 or 0 for a flag)."""
    found, baseline, baseline_days, generator, completeness, near_zero, suspected, *rest = columns
    peer_ratio, own_corr, peer_rank, hour_kwh, hour_peer = rest
    return verdicts.Earlier(
        found=found == 1,
        baseline=baseline,
        baseline_days=baseline_days,
        generator=generator == 1,
        completeness=completeness,
        near_zero=near_zero == 1,
        suspected=suspected == 1,
        peer_ratio=peer_ratio,
        own_corr=own_corr,
        peer_rank=peer_rank,
        hour_kwh=hour_kwh,
        hour_peer=hour_peer,
    )


def _stored(
    params: dict[str, Any],
    meter_ids: list[str],
    feeder_ids: list[str],
    day: verdicts.MeterDays,
    made: verdicts.Verdicts,
) -> dict[str, Any]:
    """store_days' parameters: every column of the features, as float8[] (hours flattened)."""
    columns = {
        "reads": day.reads,
        "interval_minutes": day.interval_minutes,
        "kwh_per_read": day.kwh_per_read,
        "zero_reads": day.zero_reads,
        "variation": day.variation,
        "peer_corr": day.peer_corr,
        "exported": day.exported,
        "metered": day.metered,
        "peer": day.peer,
        "sunlit": np.where(np.isnan(day.metered), np.nan, day.sunlit),
        "hour_kwh": made.hour_kwh,
        "baseline": made.baseline,
        "baseline_days": made.baseline_days,
        "own_ratio": made.own_ratio,
        "own_corr": made.own_corr,
        "own_error": made.own_error,
        "peer_ratio": made.peer_ratio,
        "peer_rank": made.peer_rank,
        "near_zero": made.near_zero,
        "generator": made.generator,
    }
    return {
        **params,
        **{name: float8_array(np.reshape(values, -1)) for name, values in columns.items()},
        "meter_ids": meter_ids,
        "feeder_ids": feeder_ids,
        "reasons": [_REASON_LISTS[bits] for bits in made.reasons.tolist()],
    }
