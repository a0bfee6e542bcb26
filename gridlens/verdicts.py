"""The theft verdict of a tenant-day's meters, every meter at once (SPEC §7).

The rules of sql/migrations/0010, vectorised: at 25,000 meters they took about 2 s as SQL
functions called per meter, and take milliseconds here (#16). A meter-day's features
come in as arrays with one row per meter, 24 hourly columns (UTC) where hourly; NaN
stands for SQL's NULL (an hour without reads, a statistic without enough data), and is
ignored by every aggregate as NULL is.

  own_ratio   the median over the hours of kWh over what the baseline expects (its usual
              share of its peers' load, times the peers' load that hour);
  own_corr    the hourly profile's rank correlation with that expectation;
  own_error   own_ratio's standard error (1.2533 σ / √n), widened for a young baseline;
  peer_rank   the hourly profile's rank correlation with the peers' profile;
  peer_ratio  own_ratio over the median own_ratio of the feeder's judged meters.
A rank correlation leaves out the two hours whose ranks disagree most (an EV's session, PV
at dawn). The baseline moves toward a day's hourly shares only when that day was clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]

BASELINE_DAYS_MAX: Final = 7  # the running mean's window
BASELINE_READS_MIN: Final = 192  # 2 days at 15 minutes: a younger baseline judges nothing
JUDGED_SHARE: Final = 0.8  # of a day's minutes read, for a meter-day to be judged

# The reasons, in the order they are listed, with their bit in Verdicts.reasons.
REASONS: Final = ("consumption-drop", "zero-reads", "flat-profile", "profile-mismatch")


@dataclass(frozen=True)
class MeterDays:
    """The day's features of n meters."""

    feeder: npt.NDArray[np.int64]  # a code per feeder: the meters judged against each other
    reads: Floats
    interval_minutes: Floats
    kwh_per_read: Floats
    zero_reads: Floats
    variation: Floats
    peer_corr: Floats
    exported: Flags
    metered: Floats  # (n, 24): kWh per hour
    peer: Floats  # (n, 24): the peers' mean kWh over the same read times
    sunlit: Flags  # (n, 24): a meter of the feeder exported in that hour


@dataclass(frozen=True)
class Earlier:
    """Each meter's latest earlier day within 8 days (found = false: none)."""

    found: Flags
    baseline: Floats  # (n, 24)
    baseline_days: Floats
    generator: Flags
    completeness: Floats
    near_zero: Flags
    suspected: Flags  # any reason listed
    peer_ratio: Floats
    own_corr: Floats
    peer_rank: Floats
    hour_kwh: Floats  # (n, 24): the hours it was compared over
    hour_peer: Floats  # (n, 24)


@dataclass(frozen=True)
class Verdicts:
    hour_kwh: Floats  # (n, 24): a generator's sunlit hours left out
    generator: Flags
    baseline: Floats  # (n, 24): carried out of the earlier day
    baseline_days: Floats
    own_ratio: Floats
    own_corr: Floats
    own_error: Floats
    peer_rank: Floats
    peer_ratio: Floats
    near_zero: Flags
    reasons: npt.NDArray[np.int64]  # bit i set: REASONS[i]


def rank_corr(first: Floats, second: Floats) -> Floats:
    """Per row, the correlation of the ranks (SQL rank(): ties share the lowest) of the
    hours both have, leaving out the two hours whose ranks disagree most (ties go to the
    earlier hour); NaN with fewer than 2 hours left or no spread."""
    both = ~np.isnan(first) & ~np.isnan(second)
    first_rank = _ranks(first, both)
    second_rank = _ranks(second, both)
    # Most disagreeing first, then by hour (a stable sort); hours without both last.
    order = np.argsort(
        np.where(both, -np.abs(first_rank - second_rank), np.inf), axis=1, kind="stable"
    )
    position = np.empty_like(order)
    hours = np.broadcast_to(np.arange(order.shape[1]), order.shape)
    np.put_along_axis(position, order, hours, axis=1)
    return _pearson(first_rank, second_rank, both & (position >= 2))


def compare_hours(
    hour_kwh: Floats, hour_peer: Floats, baseline: Floats, baseline_days: Floats
) -> tuple[Floats, Floats, Floats]:
    """own_ratio, own_corr, own_error of each row, over the hours with kWh and a baseline."""
    compared = ~np.isnan(hour_kwh) & ~np.isnan(baseline)
    expected = np.where(compared, baseline * hour_peer, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(compared & (expected != 0), hour_kwh / expected, np.nan)
    own_ratio = _nanmedian(ratio)
    own_corr = rank_corr(np.where(compared, hour_kwh, np.nan), expected)
    counted = compared.sum(axis=1)
    ratios = (~np.isnan(ratio)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.nansum(ratio, axis=1) / ratios
        spread = np.nansum((ratio - mean[:, None]) ** 2, axis=1) / (ratios - 1)
        days = np.maximum(np.fmin(baseline_days, BASELINE_DAYS_MAX), 1)  # NaN: 7, as LEAST
        own_error = 1.2533 * np.sqrt(spread) / np.sqrt(counted) * np.sqrt(1 + 1.0 / days)
    own_error = np.where(ratios >= 2, own_error, np.nan)
    return own_ratio, own_corr, own_error


def next_baseline(
    baseline: Floats, baseline_days: Floats, clean: Flags, hour_kwh: Floats, hour_peer: Floats
) -> Floats:
    """The baseline after a day: moved toward the day's hourly shares when it was clean."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(hour_peer != 0, hour_kwh / hour_peer, np.nan)
    weight = np.minimum(baseline_days + 1, BASELINE_DAYS_MAX)[:, None]
    moved = np.where(
        np.isnan(share),
        baseline,
        np.where(np.isnan(baseline), share, baseline + (share - baseline) / weight),
    )
    return np.where(clean[:, None], moved, baseline)


def carried(earlier: Earlier) -> tuple[Floats, Floats]:
    """Each meter's baseline and its days, carried out of its latest earlier day: moved by
    that day if it was clean (enough reads, no reason to suspect it, and not near one
    either: a theft just short of a threshold must not teach the baseline its new level
    or shape). No earlier day: none, and 0 days."""
    clean = (
        earlier.found
        & (earlier.completeness >= 0.5)
        & ~earlier.near_zero
        & ~earlier.suspected
        & (np.nan_to_num(earlier.peer_ratio, nan=1.0) >= 0.9)
        & (np.nan_to_num(earlier.own_corr, nan=1.0) >= 0.8)
        & (np.nan_to_num(earlier.peer_rank, nan=1.0) >= 0.55)
    )
    moved = next_baseline(
        earlier.baseline, earlier.baseline_days, clean, earlier.hour_kwh, earlier.hour_peer
    )
    baseline = np.where(earlier.found[:, None], moved, np.nan)
    return baseline, np.where(earlier.found, earlier.baseline_days + clean, 0.0)


def judge(day: MeterDays, earlier: Earlier) -> Verdicts:
    """The verdict of every meter-day of one tenant-day."""
    generator = day.exported | (earlier.found & earlier.generator)
    # A generator is compared over the hours without sun on its feeder only.
    hour_kwh = np.where(generator[:, None] & day.sunlit, np.nan, day.metered)
    baseline, baseline_days = carried(earlier)
    old_enough = baseline_days * 1440 // day.interval_minutes >= BASELINE_READS_MIN
    own_ratio, own_corr, own_error = compare_hours(
        hour_kwh,
        day.peer,
        np.where(old_enough[:, None], baseline, np.nan),
        np.where(earlier.found, baseline_days, np.nan),
    )
    peer_rank = rank_corr(hour_kwh, day.peer)
    judged = day.reads * day.interval_minutes >= JUDGED_SHARE * 1440
    feeder_ratio, feeder_error = _feeder_medians(
        day.feeder, judged & ~np.isnan(own_ratio), own_ratio, own_error
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        peer_ratio = np.where(feeder_ratio != 0, own_ratio / feeder_ratio, np.nan)
    near_zero = (day.kwh_per_read * 60.0 / day.interval_minutes < 0.1) & (
        np.nan_to_num(day.peer_corr, nan=0.0) < 0.3
    )
    return Verdicts(
        hour_kwh=hour_kwh,
        generator=generator,
        baseline=baseline,
        baseline_days=baseline_days,
        own_ratio=own_ratio,
        own_corr=own_corr,
        own_error=own_error,
        peer_rank=peer_rank,
        peer_ratio=peer_ratio,
        near_zero=near_zero,
        reasons=reasons(day, peer_ratio, np.fmax(own_error, feeder_error), own_corr, peer_rank),
    )


def reasons(
    day: MeterDays, peer_ratio: Floats, error: Floats, own_corr: Floats, peer_rank: Floats
) -> npt.NDArray[np.int64]:
    """The rules: what a meter-day's figures say about theft, as bits of REASONS. A drop
    is a peer_ratio under 0.85 that is also 3 standard errors (the larger of the meter's
    own and its feeder's median) below 1."""
    mismatch = (own_corr < 0.65) | (peer_rank < 0.3) | ((own_corr < 0.85) & (peer_rank < 0.55))
    drop = peer_ratio < np.fmin(0.85, 1 - 3 * error)
    zero = day.zero_reads * day.interval_minutes >= 30  # half an hour
    flat = day.variation < 0.15
    bits: npt.NDArray[np.int64] = np.zeros(peer_ratio.shape, dtype=np.int64)
    for bit, broken in enumerate((drop, zero, flat, mismatch)):
        bits |= broken.astype(np.int64) << bit
    return bits


def reason_names(bits: int) -> list[str]:
    return [name for i, name in enumerate(REASONS) if bits & (1 << i)]


def _ranks(values: Floats, present: Flags) -> Floats:
    """1 + how many present hours of the row are smaller (NaN where not present)."""
    keyed = np.where(present, values, np.inf)
    order = np.argsort(keyed, axis=1, kind="stable")
    ordered = np.take_along_axis(keyed, order, axis=1)
    starts = np.ones(ordered.shape, dtype=np.bool_)  # where a run of equal values starts
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(keyed.shape[1]), 0), axis=1)
    ranks = np.empty(keyed.shape)
    np.put_along_axis(ranks, order, first + 1.0, axis=1)
    return np.where(present, ranks, np.nan)


def _pearson(first: Floats, second: Floats, kept: Flags) -> Floats:
    count = kept.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        first_mean = np.where(kept, first, 0).sum(axis=1) / count
        second_mean = np.where(kept, second, 0).sum(axis=1) / count
        first_off = np.where(kept, first - first_mean[:, None], 0)
        second_off = np.where(kept, second - second_mean[:, None], 0)
        first_spread = (first_off**2).sum(axis=1)
        second_spread = (second_off**2).sum(axis=1)
        corr = (first_off * second_off).sum(axis=1) / np.sqrt(first_spread * second_spread)
    return np.where((count >= 1) & (first_spread > 0) & (second_spread > 0), corr, np.nan)


def _nanmedian(values: Floats) -> Floats:
    """The median of each row's numbers (SQL percentile_cont(0.5)), NaN for none: the mean
    of the middle two of the row sorted, NaN last (np.nanmedian gives the same, in masked
    arrays, several times slower)."""
    ordered = np.sort(values, axis=1)
    count = (~np.isnan(values)).sum(axis=1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)
    high = np.take_along_axis(ordered, np.minimum(count // 2, values.shape[1] - 1)[:, None], axis=1)
    return np.where(count > 0, (low[:, 0] + high[:, 0]) / 2, np.nan)


def _feeder_medians(
    feeder: npt.NDArray[np.int64], counted: Flags, ratio: Floats, error: Floats
) -> tuple[Floats, Floats]:
    """Per meter, the medians of its feeder's counted meters (NaN: none counted)."""
    feeder_ratio = np.full(ratio.shape, np.nan)
    feeder_error = np.full(ratio.shape, np.nan)
    for code in np.unique(feeder[counted]):
        members = feeder == code
        chosen = members & counted
        feeder_ratio[members] = np.median(ratio[chosen])
        errors = error[chosen & ~np.isnan(error)]
        if errors.size:
            feeder_error[members] = np.median(errors)
    return feeder_ratio, feeder_error
