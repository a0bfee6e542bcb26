"""The publish plan: one feeder per job, the job cap, truncation and the cursor."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from gridlens.settings import Caps
from producer.fleet import feeder_of
from producer.planner import jobs_for_window, plan_publish, window_meters
from producer.request import parse_publish_request


def request(**body: Any) -> Any:
    return parse_publish_request(
        {"tenantId": "DEMO_TENANT", **body}, Caps(), datetime(2026, 11, 26, 12, tzinfo=UTC)
    )


def test_25000_meters_on_25_feeders_at_500_is_50_jobs() -> None:
    plan = plan_publish(request(meterCount=25_000, feederCount=25, batchSize=500), 200)
    assert (plan.meters, plan.jobs, plan.cycles, plan.truncated) == (25_000, 50, 1, False)
    assert plan.truncation_warning() is None and plan.next_cursor == 1


def test_batch_100_truncates_to_20000_meters_and_two_cycles_cover_the_fleet() -> None:
    first = plan_publish(request(meterCount=25_000, batchSize=100), 200)
    assert (first.meters, first.jobs, first.cycles) == (20_000, 200, 2)
    assert (first.first_meter, first.last_meter, first.next_cursor) == (1, 20_000, 20_001)
    assert "truncated to 20000 meters per publish" in str(first.truncation_warning())
    second = plan_publish(request(meterCount=25_000, batchSize=100), 200, first.next_cursor)
    assert (second.first_meter, second.last_meter, second.next_cursor) == (20_001, 25_000, 1)
    assert second.jobs == 50


def test_a_cursor_beyond_the_fleet_starts_again_at_one() -> None:
    assert plan_publish(request(meterCount=1_000), 200, 5_000).first_meter == 1


@pytest.mark.parametrize(
    ("meters", "feeders", "batch"),
    [
        (25_000, 25, 500),
        (25_000, 25, 100),
        (25_000, 40, 7),
        (999, 10, 1),
        (17, 13, 3),
        (25_000, 10, 500),
        (12_345, 37, 64),
    ],
)
def test_every_job_holds_one_feeder_within_the_caps(meters: int, feeders: int, batch: int) -> None:
    plan = plan_publish(request(meterCount=meters, feederCount=feeders, batchSize=batch), 200)
    jobs = list(plan.job_meters())
    assert len(jobs) == plan.jobs <= 200
    covered = []
    for feeder, numbers in jobs:
        assert 0 < len(numbers) <= batch
        assert set(feeder_of(numbers, feeders).tolist()) == {feeder}
        covered += numbers.tolist()
    assert sorted(covered) == list(range(plan.first_meter, plan.last_meter + 1))
    per_feeder = Counter(feeder_of(np.array(covered), feeders).tolist())
    assert plan.jobs == sum(math.ceil(n / batch) for n in per_feeder.values())


def test_the_window_is_the_largest_that_fits() -> None:
    for meters, feeders, batch in [(25_000, 25, 100), (25_000, 40, 7), (5_000, 10, 3)]:
        window = window_meters(meters, feeders, batch, 200)
        assert jobs_for_window(window, feeders, batch) <= 200
        assert window == meters or jobs_for_window(window + 1, feeders, batch) > 200
