"""What a benchmark measures of processes and of Redis: CPU, peak RSS, Redis memory.

CPU seconds and peak resident memory come from /proc (Linux), as does the CPU of
the PostgreSQL server and of the machine as a whole; Redis memory is
``INFO memory`` ``used_memory``, sampled by a thread while a run goes on, and the
Redis server's own CPU is ``INFO cpu`` before and after.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

import redis

REDIS_SAMPLE_S = 0.01  # INFO memory costs tens of µs: sampling every 10 ms is free
MB = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def _stat_cpu_seconds(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL server process on this machine, by pid
    (command name ``postgres``: the postmaster, its backends and helpers)."""
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        if stat.split("(", 1)[1].rsplit(")", 1)[0] == "postgres":
            seconds[int(entry.name)] = _stat_cpu_seconds(stat)
    return seconds


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU seconds PostgreSQL's processes used since ``before`` (processes started
    meanwhile count whole; one that exited meanwhile is missed)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in postgres_cpu_seconds().items())


def machine_cpu() -> tuple[int, int]:
    """(idle, total) clock ticks of all the machine's CPUs so far (/proc/stat)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return idle, sum(ticks[:8])  # steal included; guest time is already in user


def reset_peak_rss(pid: int) -> None:
    """Start the process's VmHWM over from its current resident set (proc(5): clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class RedisUsage:
    """Peak ``used_memory`` while the block runs, less the baseline taken on entry;
    and the CPU seconds the Redis server spent meanwhile."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="redis-memory", daemon=True)
        self.baseline = 0
        self.peak = 0
        self.cpu_s = 0.0

    def _used(self) -> int:
        return int(self._client.info("memory")["used_memory"])

    def _cpu(self) -> float:
        info = self._client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def _sample(self) -> None:
        while not self._stop.wait(REDIS_SAMPLE_S):
            self.peak = max(self.peak, self._used())

    def __enter__(self) -> RedisUsage:
        self.baseline = self.peak = self._used()
        self.cpu_s = -self._cpu()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cpu_s += self._cpu()
        self._client.close()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB
