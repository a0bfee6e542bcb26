"""What a publish's own jobs show of its pace: figures that cannot exceed the cap.

The limiter (gridlens/lua/enqueue.lua) admits a job of n reads only when the last
second, plus n, stays within the cap, and only n / cap seconds after the previous
job. So the publish's reads in any 1-second window of server time are at most the
cap, and the time it occupied the limiter, from its first write until the limiter
lets the next job in, is at least reads / cap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

WINDOW_US = 1_000_000


def fullest_window(written: Sequence[tuple[int, int]], window: int) -> int:
    """The most reads in any window [t, t + window) of (time, reads) pairs, sorted by time."""
    fullest = in_window = first = 0
    for time, reads in written:
        in_window += reads
        while time - written[first][0] >= window:
            in_window -= written[first][1]
            first += 1
        fullest = max(fullest, in_window)
    return fullest


@dataclass
class PaceLog:
    """The server time (µs) at which each job was written, and its reads."""

    cap: int  # reads per second
    written_us: list[int] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)

    def add(self, written_us: int, reads: int) -> None:
        self.written_us.append(written_us)
        self.reads.append(reads)

    def fullest_second(self) -> int:
        """The most reads written in any 1-second window [t, t + 1 s)."""
        return fullest_window(list(zip(self.written_us, self.reads, strict=True)), WINDOW_US)

    def average_per_second(self) -> float | None:
        """Reads per second over the time the publish occupied the limiter.

        That time runs from the first write to when the last job's pacing lets the
        next in; truncated to 0.1 so that rounding never lifts it over the cap.
        """
        if not self.written_us:
            return None
        occupied_s = (self.written_us[-1] - self.written_us[0]) / 1e6 + self.reads[-1] / self.cap
        return math.floor(sum(self.reads) / occupied_s * 10) / 10
