"""The adaptive in-flight limit: how many jobs a consumer runs at once (5–10, start 8).

A small version of the Gradient2 limit of Netflix's concurrency-limits
(the Netflix concurrency-limits library): the short-term average of insert latency
is compared with a baseline; when it exceeds the baseline by more than the
tolerance, the limit shrinks in proportion (the gradient), otherwise it grows by
one "queue" step; changes are smoothed. The baseline stands for the latency of an
uncontended insert, as the minimum RTT does in TCP Vegas: it follows lower
latencies quickly (over ``short_samples``) and higher ones slowly (over
``long_samples``), so a database that is already saturated when the consumer
starts still reads as saturated once a few faster inserts have been seen. A failed insert (error,
timeout) cuts the limit multiplicatively, as AIMD does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AdaptiveLimit:
    minimum: int = 5
    maximum: int = 10
    initial: int = 8
    tolerance: float = 1.5  # short-term latency may exceed the baseline by this factor
    smoothing: float = 0.2  # weight of each new estimate
    queue_step: float = 1.0  # growth per sample while latency is at the baseline
    short_samples: int = 10  # window of the short-term average
    long_samples: int = 200  # window of the long-term baseline
    failure_factor: float = 0.8  # multiplicative cut after a failed insert
    _limit: float = field(init=False)
    _short: float | None = field(init=False, default=None)
    _long: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._limit = float(self.initial)

    @property
    def limit(self) -> int:
        return round(self._limit)

    @property
    def recent_latency_s(self) -> float:
        """The short-term average insert latency (0 before the first insert)."""
        return self._short or 0.0

    def observe(self, latency_s: float) -> int:
        """Account for one successful insert's latency; return the new limit."""
        self._short = _average(self._short, latency_s, self.short_samples)
        # The baseline follows lows quickly and highs slowly: it tracks the latency of
        # the faster inserts, near what an uncontended insert takes.
        falling = self._long is not None and latency_s < self._long
        self._long = _average(
            self._long, latency_s, self.short_samples if falling else self.long_samples
        )
        gradient = max(0.5, min(1.0, self.tolerance * self._long / self._short))
        estimate = self._limit * gradient + self.queue_step
        return self._set(self._limit * (1 - self.smoothing) + estimate * self.smoothing)

    def failed(self) -> int:
        """Account for a failed insert; return the new limit."""
        return self._set(self._limit * self.failure_factor)

    def _set(self, value: float) -> int:
        self._limit = max(float(self.minimum), min(float(self.maximum), value))
        return self.limit


def _average(current: float | None, sample: float, samples: int) -> float:
    if current is None:
        return sample
    return current + (sample - current) / samples
