"""The verdict's arithmetic (gridlens/verdicts.py), without servers; test_kpi scores the
verdicts end to end against the emulator's ground truth."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gridlens import verdicts
from gridlens.pgbinary import float8_array, load_float8_array, load_int8_array

PROFILE = np.array([0.3, 0.25, 0.2, 0.2, 0.22, 0.3, 0.5, 0.8, 0.7, 0.5, 0.45, 0.4] * 2)
PROFILE = PROFILE + np.arange(24) * 1e-3  # no ties


def rows(*profiles: np.ndarray) -> np.ndarray:
    return np.vstack(profiles).astype(np.float64)


def test_rank_correlation_of_a_profile_with_itself_its_reverse_and_a_scaled_copy() -> None:
    reverse = PROFILE.max() - PROFILE
    corr = verdicts.rank_corr(rows(PROFILE, PROFILE, PROFILE), rows(PROFILE, reverse, PROFILE * 3))
    assert corr == pytest.approx([1.0, -1.0, 1.0])


def test_the_two_hours_that_disagree_most_are_left_out() -> None:
    swapped = PROFILE.copy()
    swapped[[2, 7]] = swapped[[7, 2]]  # an evening's EV session and a quiet hour trade places
    corr = verdicts.rank_corr(rows(PROFILE), rows(swapped))
    assert corr[0] == pytest.approx(1.0)


def test_hours_without_reads_are_left_out_and_too_few_give_none() -> None:
    gappy = PROFILE.copy()
    gappy[5:20] = np.nan
    few = np.full(24, np.nan)
    few[:3] = PROFILE[:3]  # three hours: one left once two are left out
    corr = verdicts.rank_corr(rows(gappy, few), rows(PROFILE, PROFILE))
    assert corr[0] == pytest.approx(1.0)
    assert np.isnan(corr[1])


def test_ties_share_the_lowest_rank_as_sql_rank_does() -> None:
    tied = np.array([[1.0, 1.0, 2.0, np.nan, 0.5]])
    present = ~np.isnan(tied)
    ranks = verdicts._ranks(tied, present)
    assert ranks[0, :3].tolist() == [2.0, 2.0, 4.0] and ranks[0, 4] == 1.0
    assert np.isnan(ranks[0, 3])


def test_a_day_at_nine_tenths_of_its_baseline_everywhere() -> None:
    peer = rows(PROFILE * 4)
    share = np.full((1, 24), 0.25)
    kwh = 0.9 * share * peer  # kWh follows the expectation
    own_ratio, own_corr, own_error = verdicts.compare_hours(kwh, peer, share, np.array([7.0]))
    assert own_ratio[0] == pytest.approx(0.9)
    assert own_corr[0] == pytest.approx(1.0)
    assert own_error[0] == pytest.approx(0.0, abs=1e-6)
    none = verdicts.compare_hours(kwh, peer, np.full((1, 24), np.nan), np.array([np.nan]))
    assert all(np.isnan(figure[0]) for figure in none)  # no baseline: nothing to compare


def test_the_baseline_moves_only_after_a_clean_day() -> None:
    baseline = np.array([[0.2, np.nan, 0.4]])
    kwh = np.array([[0.6, 0.3, np.nan]])
    peer = np.array([[2.0, 1.0, 1.0]])  # shares 0.3, 0.3, none
    days = np.array([1.0])
    moved = verdicts.next_baseline(baseline, days, np.array([True]), kwh, peer)
    assert moved[0].tolist() == pytest.approx([0.2 + (0.3 - 0.2) / 2, 0.3, 0.4])
    kept = verdicts.next_baseline(baseline, days, np.array([False]), kwh, peer)
    assert np.array_equal(kept, baseline, equal_nan=True)


def test_reasons_are_named_in_their_order() -> None:
    assert verdicts.reason_names(0) == []
    assert verdicts.reason_names(0b1010) == ["zero-reads", "profile-mismatch"]


def test_binary_float8_arrays_round_trip_with_their_shape_and_nan() -> None:
    matrix = np.array([[1.5, np.nan, -2.0], [0.0, 1e-300, 3e300]])
    loaded = load_float8_array(float8_array(matrix))
    assert loaded.shape == (2, 3)
    assert np.array_equal(loaded, matrix, equal_nan=True)


def test_binary_bigint_arrays_load_whole() -> None:
    keys = [-(2**63), -1, 0, 2**63 - 1]
    data = struct.pack(">iiIii", 1, 0, 20, len(keys), 1) + b"".join(
        struct.pack(">iq", 8, key) for key in keys
    )
    assert load_int8_array(data).tolist() == keys


def test_medians_of_the_hours_with_figures_as_sql_percentile_cont() -> None:
    values = np.array(
        [
            [3.0, np.nan, 1.0, 2.0],  # odd: the middle one
            [4.0, 1.0, 6.0, 2.0],  # even: the mean of the middle two
            [np.nan, 4.0, 1.0, 3.0],
            [np.nan] * 4,  # none: no median
        ]
    )
    medians = verdicts._nanmedian(values)
    assert medians[:3].tolist() == [2.0, 3.0, 3.0] and np.isnan(medians[3])
    rows = np.random.default_rng(7).random((200, 24))
    rows[rows < 0.3] = np.nan
    assert np.array_equal(verdicts._nanmedian(rows), np.nanmedian(rows, axis=1))
