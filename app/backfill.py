"""Publishing many intervals through the API: `gridlens backfill` and `gridlens emulate`.

Both publish interval after interval with publish-once (so every cap and the
backpressure of SPEC §4 hold; a 429 waits its Retry-After), each interval in as
many cycles as the fleet needs. Both are resumable: after each complete interval
the next one is written to a progress file in the data dir, and a restart with
the same fleet goes on from there, without gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.api_client import ApiClient
from producer.fleet import align_read_at


@dataclass(frozen=True)
class Fleet:
    tenant_id: str
    meters: int
    feeders: int
    interval_minutes: int = 15
    batch_size: int = 500

    def body(self, read_at: datetime) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "meterCount": self.meters,
            "feederCount": self.feeders,
            "intervalMinutes": self.interval_minutes,
            "batchSize": self.batch_size,
            "readAt": read_at.isoformat().replace("+00:00", "Z"),
        }


class Progress:
    """The next interval to publish, kept in <data dir>/progress/<command>-<tenant>.json."""

    def __init__(self, data_dir: Path, command: str, fleet: Fleet) -> None:
        self.path = data_dir / "progress" / f"{command}-{fleet.tenant_id}.json"
        self.fleet = fleet

    def load(self) -> datetime | None:
        try:
            saved = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if saved.get("fleet") != asdict(self.fleet):
            return None  # another fleet: start afresh
        return datetime.fromisoformat(saved["next_read_at"])

    def save(self, next_read_at: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"fleet": asdict(self.fleet), "next_read_at": next_read_at.isoformat()})
        )
        temporary.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


async def publish_interval(client: ApiClient, fleet: Fleet, read_at: datetime) -> int:
    """Every meter of the fleet at one interval (several publishes when truncated)."""
    reads = 0
    while True:
        answer = await client.publish(fleet.body(read_at))
        reads += int(answer.body["reads"])
        if answer.body["nextCursor"] == 1:
            return reads


async def backfill(
    client: ApiClient,
    fleet: Fleet,
    days: int,
    progress: Progress,
    report: Callable[[str], None] = lambda line: None,
) -> int:
    """The fleet's intervals of the last ``days`` days, oldest first; returns reads."""
    step = timedelta(minutes=fleet.interval_minutes)
    end = align_read_at(datetime.now(UTC), fleet.interval_minutes)
    first = end - timedelta(days=days) + step
    read_at = max(progress.load() or first, first)
    total = int((end - first) / step) + 1
    done_before = int((read_at - first) / step)
    started, reads = time.monotonic(), 0
    while read_at <= end:
        reads += await publish_interval(client, fleet, read_at)
        read_at += step
        progress.save(read_at)
        done = int((read_at - first) / step)
        report(_progress_line(fleet, done, total, done - done_before, reads, started))
    progress.clear()
    return reads


async def emulate(
    client: ApiClient,
    fleet: Fleet,
    speed: float,
    progress: Progress,
    stop: asyncio.Event,
    report: Callable[[str], None] = lambda line: None,
    catch_up: timedelta = timedelta(days=1),
) -> int:
    """Publish every interval as simulated time passes, ``speed`` times faster than real.

    Simulated time starts where the last run stopped (or ``catch_up`` ago) and runs
    fast until it meets real time; a read is never published ahead of real time.
    """
    step = timedelta(minutes=fleet.interval_minutes)
    start = align_read_at(
        datetime.now(UTC) - (catch_up if speed > 1 else step), fleet.interval_minutes
    )
    read_at = progress.load() or start
    sim_start, real_start, reads = read_at, time.monotonic(), 0
    while not stop.is_set():
        now = datetime.now(UTC)
        simulated = sim_start + timedelta(seconds=(time.monotonic() - real_start) * speed)
        if read_at <= min(simulated, now):
            reads += await publish_interval(client, fleet, read_at)
            report(
                f"emulate {fleet.tenant_id}: published {read_at:%Y-%m-%d %H:%M} UTC, "
                f"{reads:,} reads so far"
            )
            read_at += step
            progress.save(read_at)
            continue
        # Due when simulated time reaches it, and never before real time does.
        wait = max((read_at - simulated).total_seconds() / speed, (read_at - now).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(max(wait, 0.05), 5.0))
    return reads


def _progress_line(
    fleet: Fleet, done: int, total: int, done_now: int, reads: int, started: float
) -> str:
    elapsed = time.monotonic() - started
    rate = reads / elapsed if elapsed else 0.0
    eta_s = (total - done) * elapsed / done_now if done_now else 0.0
    width = 30
    bar = "#" * round(width * done / total) + "-" * (width - round(width * done / total))
    return (
        f"backfill {fleet.tenant_id} [{bar}] {done}/{total} intervals, "
        f"{rate:,.0f} reads/s, ETA {timedelta(seconds=round(eta_s))}"
    )


def print_progress(line: str) -> None:
    sys.stderr.write("\r" + line)
    sys.stderr.flush()
