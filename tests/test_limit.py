"""The adaptive in-flight limit: 5–10, start 8, following insert latency."""

from __future__ import annotations

import random

from consumer.limit import AdaptiveLimit


def test_it_starts_at_8_and_grows_to_10_while_latency_is_steady() -> None:
    limit = AdaptiveLimit()
    assert limit.limit == 8
    for _ in range(50):
        limit.observe(0.020)
    assert limit.limit == 10


def test_it_shrinks_to_5_when_latency_climbs_and_recovers_when_it_falls() -> None:
    limit = AdaptiveLimit()
    for _ in range(300):
        limit.observe(0.020)
    for _ in range(60):
        limit.observe(0.200)  # the database slows down tenfold
    assert limit.limit == 5
    for _ in range(400):
        limit.observe(0.020)
    assert limit.limit == 10


def test_failures_cut_the_limit() -> None:
    limit = AdaptiveLimit()
    assert limit.failed() == 6
    assert limit.failed() == 5
    assert limit.failed() == 5


def test_no_sequence_leaves_the_bounds() -> None:
    chance = random.Random(7)
    limit = AdaptiveLimit()
    for _ in range(10_000):
        if chance.random() < 0.05:
            value = limit.failed()
        else:
            value = limit.observe(chance.lognormvariate(-3, 1.5))
        assert 5 <= value <= 10
