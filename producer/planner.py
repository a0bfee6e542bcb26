"""The publish plan: which meters go out, in which jobs (SPEC §4).

A job holds the meters of one feeder only, at most ``batch_size`` of them, so a
range of meters needs Σ over feeders of ⌈meters on the feeder / batch size⌉
jobs. When that exceeds the job cap, the range is cut to the most meters that
fit, and a per-tenant cursor makes the next publish continue where this one
stopped: a fleet of N meters is covered in ⌈N / window⌉ publishes (cycles).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from producer.fleet import IntArray, feeder_meters
from producer.request import PublishRequest


def jobs_for_window(meters: int, feeder_count: int, batch_size: int) -> int:
    """Jobs for any ``meters`` consecutive meters (round-robin: the count per feeder
    depends on the length of the range, not on where it starts)."""
    base, extra = divmod(meters, feeder_count)
    return extra * math.ceil((base + 1) / batch_size) + (feeder_count - extra) * math.ceil(
        base / batch_size
    )


def window_meters(meter_count: int, feeder_count: int, batch_size: int, max_jobs: int) -> int:
    """The most consecutive meters (≤ meter_count) that fit in ``max_jobs`` jobs."""
    low, high = 0, meter_count  # jobs_for_window grows with the window: bisect
    while low < high:
        middle = (low + high + 1) // 2
        if jobs_for_window(middle, feeder_count, batch_size) <= max_jobs:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class Plan:
    request: PublishRequest
    max_jobs: int  # the job cap in force
    window: int  # meters one publish can cover under the job cap
    first_meter: int
    last_meter: int  # inclusive

    @property
    def meters(self) -> int:
        return self.last_meter - self.first_meter + 1

    @property
    def truncated(self) -> bool:
        return self.window < self.request.meter_count

    @property
    def cycles(self) -> int:
        """Publishes needed to read every meter of the fleet once."""
        return math.ceil(self.request.meter_count / self.window)

    @property
    def next_cursor(self) -> int:
        """The first meter of the next publish (1 when this one reaches the fleet's end)."""
        return 1 if self.last_meter >= self.request.meter_count else self.last_meter + 1

    @property
    def jobs(self) -> int:
        return sum(1 for _ in self.job_meters())

    def job_meters(self) -> Iterator[tuple[int, IntArray]]:
        """(feeder, meter numbers) of each job, feeder by feeder."""
        request = self.request
        for feeder in range(1, request.feeder_count + 1):
            meters = feeder_meters(feeder, self.first_meter, self.last_meter, request.feeder_count)
            for start in range(0, len(meters), request.batch_size):
                yield feeder, meters[start : start + request.batch_size]

    def truncation_warning(self) -> str | None:
        if not self.truncated:
            return None
        request = self.request
        needed = jobs_for_window(request.meter_count, request.feeder_count, request.batch_size)
        return (
            f"meterCount {request.meter_count} at batchSize {request.batch_size} on "
            f"{request.feeder_count} feeders needs {needed} jobs, over the cap of "
            f"{self.max_jobs} per publish: truncated to {self.window} meters per publish; this "
            f"one covers meters {self.first_meter}-{self.last_meter}, the next continues at "
            f"meter {self.next_cursor}, and {self.cycles} publishes cover the fleet"
        )


def plan_publish(request: PublishRequest, max_jobs: int, cursor: int = 1) -> Plan:
    """The plan for a publish starting at meter ``cursor`` (reset to 1 if past the fleet)."""
    window = window_meters(request.meter_count, request.feeder_count, request.batch_size, max_jobs)
    first = cursor if 1 <= cursor <= request.meter_count else 1
    last = min(first + window - 1, request.meter_count)
    return Plan(
        request=request, max_jobs=max_jobs, window=window, first_meter=first, last_meter=last
    )
