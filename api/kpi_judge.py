"""Judging a tenant-day that is over: its features out of PostgreSQL as numpy arrays,
the verdicts of gridlens.verdicts, and features and verdicts back in one write, in the
refresh's transaction."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from gridlens import verdicts
from gridlens.pgbinary import float8_array, register, register_numpy_loader, text_array
from gridlens.sqlfiles import query

HOURS = 24
KEY_SEEDS = 3  # day_features' hash seeds tried (two of 25,000 keys alike: about 1 in 6e10)
ADDED = (np.add, np.add, np.maximum)  # two rows of a meter's hour: kWh, peers' kWh, export

Found = tuple[list[str], list[str], verdicts.MeterDays]  # meter ids, feeder ids, features

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
    found = await (_from_hours if from_hours else _stored_day)(cursor, params)
    if found is None:
        return 0
    meter_ids, feeder_ids, day = found
    meters = {"meter_ids": text_array(meter_ids), "feeder_ids": text_array(feeder_ids)}
    earlier = await cursor.execute(query("earlier_days"), {**params, **meters})
    made = verdicts.judge(day, _earlier(len(meter_ids), await earlier.fetchone()))
    await cursor.execute(query("store_days"), {**params, **meters, **_stored(day, made)})
    return len(meter_ids)


async def _from_hours(cursor: psycopg.AsyncCursor[Any], params: dict[str, Any]) -> Found | None:
    """The day's features added up from its hour rows, or from hours 0-22 added up ahead
    and the last hour's rows (day_features), or None: no rows."""
    ahead = await (await cursor.execute(query("day_added_up_ahead"), params)).fetchone()
    after = ahead[0] if ahead else -1
    for seed in range(KEY_SEEDS):
        asked = {**params, "seed": seed, "after": after}
        # Planned for its parameters every time: a plan kept for all hours (after = -1) would
        # read the hour rows for one hour's (22), and the other way round.
        features = await cursor.execute(query("day_features"), asked, prepare=False)
        row = await features.fetchone()
        if row is None or row[0] is None:
            return None
        meter_ids, feeder_ids, meter_keys, *per_meter = row[:10]
        keys, hours, *values = _hours(row[10:15], row[15:20])
        places = key_places(meter_keys, keys)
        if places is not None:
            slots = places * HOURS + hours.astype(np.int64)
            profiles = _profiles(len(meter_ids), slots, values)
            return meter_ids, feeder_ids, _day(feeder_ids, per_meter, profiles)
    raise RuntimeError(f"{KEY_SEEDS} seeds in a row gave two meters one key")


def _hours(rows: Any, ahead: Any) -> list[npt.NDArray[Any]]:
    """day_features' hours, as (key, hour, kWh, peers' kWh, export) each a flat array: the
    hour rows', then those of the rows added up ahead (24 a row, NaN where none)."""
    flat = [np.empty(0) if column is None else column for column in rows]
    flat[0] = flat[0].astype(np.int64)
    if ahead[0] is not None:
        keys, hours, *values = ahead
        present = ~np.isnan(hours)
        listed = [np.broadcast_to(keys[:, None], hours.shape), hours, *values]
        flat = [
            np.concatenate([one, more[present]]) for one, more in zip(flat, listed, strict=True)
        ]
    return flat


async def _stored_day(cursor: psycopg.AsyncCursor[Any], params: dict[str, Any]) -> Found | None:
    """The day's features as stored (stored_day: hours as rows of 24), or None: no rows."""
    row = await (await cursor.execute(query("stored_day"), params)).fetchone()
    if row is None or row[0] is None:
        return None
    meter_ids, feeder_ids, *per_meter, metered, peer, sunlit = row
    return meter_ids, feeder_ids, _day(feeder_ids, per_meter, [metered, peer, sunlit])


def key_places(
    meter_keys: npt.NDArray[np.int64], hour_keys: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64] | None:
    """Each hour row's meter, as its place among the meters, by its key; None when two
    meters have one key (ask again with another seed)."""
    order = np.argsort(meter_keys, kind="stable")
    ordered = meter_keys[order]
    if (ordered[1:] == ordered[:-1]).any():
        return None
    return order[np.searchsorted(ordered, hour_keys)]


def _day(
    feeder_ids: list[str], per_meter: list[Any], hours: list[npt.NDArray[np.float64]]
) -> verdicts.MeterDays:
    """The day's features: per meter, then its hours as (meters, 24) arrays of kWh, the
    peers' kWh and export (1 or 0)."""
    reads, interval_minutes, kwh_per_read, zero_reads, variation, peer_corr, exported = per_meter
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


def _profiles(
    meters: int, slots: npt.NDArray[np.int64], values: list[npt.NDArray[np.float64]]
) -> list[npt.NDArray[np.float64]]:
    """Hour rows' kWh, peers' kWh and export (1 or 0), at their slots (meter place × 24 +
    hour), as (meters, 24) arrays, NaN for an hour without a row (two rows of a meter's
    hour: kWh added and rounded to 0.1 Wh again, as SQL's round(numeric, 4), export
    or-ed)."""
    counted = np.bincount(slots, minlength=meters * HOURS) > 0
    profiles = []
    for value, add in zip(values, ADDED, strict=True):
        matrix = np.zeros(meters * HOURS)
        add.at(matrix, slots, value)
        profiles.append(np.where(counted, matrix, np.nan).reshape(meters, HOURS))
    profiles[0] = np.round(profiles[0], 4)
    return profiles


# earlier_days' arrays after the places (a flag as 1 or 0), and what a meter without an
# earlier day has: no baseline, no figures (NaN), none of the flags, 0 days of baseline.
_EARLIER = (
    "baseline", "baseline_days", "generator", "completeness", "near_zero", "suspected",
    "peer_ratio", "own_corr", "peer_rank", "hour_kwh", "hour_peer",
)  # fmt: skip
_HOURLY = {"baseline", "hour_kwh", "hour_peer"}
_FLAGS = {"generator", "near_zero", "suspected"}
_ZERO = {"baseline_days", "completeness"}


def _earlier(meters: int, columns: Any) -> verdicts.Earlier:
    """earlier_days' arrays put at their meters' places."""
    found = np.zeros(meters, dtype=bool)
    fields: dict[str, Any] = {}
    for name in _EARLIER:
        shape = (meters, HOURS) if name in _HOURLY else (meters,)
        empty = 0.0 if name in _ZERO else np.nan
        fields[name] = np.zeros(shape, dtype=bool) if name in _FLAGS else np.full(shape, empty)
    if columns and columns[0] is not None:
        places, *values = columns
        at = places.astype(np.int64) - 1
        found[at] = True
        for name, value in zip(_EARLIER, values, strict=True):
            fields[name][at] = value == 1 if name in _FLAGS else value
    return verdicts.Earlier(found=found, **fields)


def _stored(day: verdicts.MeterDays, made: verdicts.Verdicts) -> dict[str, Any]:
    """store_days' parameters but the ids: every column of the features, as float8[]
    (hours flattened), and the reasons."""
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
        **{name: float8_array(np.reshape(values, -1)) for name, values in columns.items()},
        "reasons": text_array([_REASON_LISTS[bits] for bits in made.reasons.tolist()]),
    }
