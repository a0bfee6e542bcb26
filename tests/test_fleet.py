"""Meter ids, feeder assignment and interval alignment exactly as SPEC §3 says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from gridlens.entry import meter_id
from producer.fleet import align_read_at, feeder_id, feeder_meters, feeder_of


def test_meter_ids_are_zero_padded_to_five_digits() -> None:
    assert meter_id("DEMO_TENANT", 1) == "DEMO_TENANT-MTR-00001"
    assert meter_id("DEMO_TENANT", 25_000) == "DEMO_TENANT-MTR-25000"
    assert meter_id("T", 123_456) == "T-MTR-123456"


def test_feeder_ids_and_the_stable_round_robin_assignment() -> None:
    assert feeder_id(7) == "FEEDER_7"
    meters = np.arange(1, 101)
    assert feeder_of(meters, 25).tolist() == [((i - 1) % 25) + 1 for i in range(1, 101)]


@pytest.mark.parametrize(("meters", "feeders"), [(25_000, 25), (1_001, 10), (37, 40), (500, 13)])
def test_feeders_partition_the_fleet(meters: int, feeders: int) -> None:
    parts = [feeder_meters(k, 1, meters, feeders) for k in range(1, feeders + 1)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1, meters + 1))
    for k, part in enumerate(parts, start=1):
        assert (feeder_of(part, feeders) == k).all()
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1  # spread evenly


def test_a_meter_range_keeps_each_meter_on_its_feeder() -> None:
    part = feeder_meters(3, 20_001, 25_000, 25)
    assert part[0] == 20_003 and (feeder_of(part, 25) == 3).all() and len(part) == 200


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(5, "12:05"), (15, "12:00"), (30, "12:00"), (60, "12:00")],
)
def test_read_at_is_the_boundary_at_or_before_the_moment(interval: int, expected: str) -> None:
    moment = datetime(2026, 11, 26, 12, 9, 59, 999_000, tzinfo=UTC)
    aligned = align_read_at(moment, interval)
    assert aligned.strftime("%H:%M:%S") == f"{expected}:00"
    assert aligned.tzinfo is UTC
    assert align_read_at(aligned, interval) == aligned


def test_alignment_is_in_utc_whatever_the_offset() -> None:
    local = datetime(2026, 11, 26, 7, 40, tzinfo=timezone(timedelta(hours=-5)))
    assert align_read_at(local, 60) == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert align_read_at(datetime(2026, 1, 1, 0, 14), 15) == datetime(2026, 1, 1, tzinfo=UTC)


def test_an_unknown_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="intervalMinutes"):
        align_read_at(datetime(2026, 1, 1, tzinfo=UTC), 10)
