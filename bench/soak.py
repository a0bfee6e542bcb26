"""A long run at the rate cap: memory, connections, lag, errors and rows over time.

A stack of its own (``bench/stack.py``) and ``gridlens emulate`` publishing a 25,000-meter
fleet back to back at 2,500 reads/s, while status, quickcheck and every process's /metrics
are polled once a second. After minute 1, at minute 5, in the middle and at the end it
prints what the targets are about; then emulate stops, ingestion drains, and the run is
judged: RSS growth < 10% from minute 5 to the end for each process, Redis used_memory
< 8 MB throughout, no 5xx, rows stored = reads published.
``python -m bench.soak [--minutes N]`` (``make soak``: 30 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import redis.asyncio as aioredis

from bench.procstat import MB, RedisUsage, machine_cpu
from bench.stack import Stack, private_mb, pss_mb, rss_mb, running_stack, tail
from gridlens.connections import RedisClient

TENANT = "SOAK_TENANT"
# emulate publishes every interval from a day ago as simulated time passes; a 25,000-meter
# interval takes 10 s at 2,500 reads/s. At 5-minute intervals, speed 30 makes one interval
# due every 10 s: exactly the cap. Speed 40 keeps simulated time ahead of the publishes, so
# emulate publishes back to back (each publish-once returns when its last job is written,
# and the consumers drain 50 jobs long before the next 500-job backpressure limit, so no
# 429s). The day of backlog (288 intervals) lasts about 48 minutes at the cap; 15-minute
# intervals (96 a day) would run out after 16 minutes, then publish once per 15 real minutes.
EMULATE_ARGS = ("--meters", "25000", "--feeders", "25", "--interval", "5", "--speed", "40")
MAX_MINUTES = 45.0  # within the day of backlog above
POLL_S = 1.0
DRAIN_WITHIN_S = 300.0
EMULATE_STOP_S = 60.0  # it finishes the publish in progress (about 10 s), then exits
RSS_GROWTH_LIMIT = 0.10
# Every PostgreSQL process maps the shared buffer cache, and the pages of it a backend has
# touched count in its RSS: summed RSS counts the cache once per backend and grows as they
# touch more of it; PSS counts it once, and grows as the cache fills (to shared_buffers,
# 128 MB). A leak would grow a backend's private memory, so that is the row judged.
UNJUDGED = {
    "postgres RSS summed": "the shared buffer cache, once per backend",
    "postgres PSS summed": "includes the buffer cache filling",
}
REDIS_LIMIT_MB = 8.0
PROGRESS = re.compile(r"emulate \w+: published (\S+ \S+) UTC, ([\d,]+) reads so far")
FINAL = re.compile(r"emulate: ([\d,]+) reads published")
ENQUEUED = re.compile(rb"^gridlens_publish_reads_enqueued_total (\S+)$", re.MULTILINE)


@dataclass
class Polls:
    """What the once-a-second pollers saw."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    no_answer: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # 5xx answers, by body
    status: dict[str, Any] = field(default_factory=dict)  # the latest status answer
    reads_enqueued: int = 0  # the API's gridlens_publish_reads_enqueued_total

    @property
    def five_xx(self) -> int:
        return sum(n for codes in self.statuses.values() for c, n in codes.items() if c >= 500)


@dataclass
class Run:
    """What a soak works with."""

    stack: Stack
    emulate: subprocess.Popen[bytes]
    usage: RedisUsage  # peak used_memory, sampled every 10 ms
    redis: RedisClient
    polls: Polls = field(default_factory=Polls)


@dataclass
class Snapshot:
    label: str
    rss_mb: dict[str, float]  # by process; postgres: its processes' RSS summed
    pids: dict[str, list[int]]
    postgres_pss_mb: float
    postgres_private_mb: float
    redis_used_mb: float
    pg_connections: int
    queue: dict[str, int]
    latest_stored: str | None
    latest_published: str | None
    ingest_rate: float
    rows: int
    reads_published: int
    five_xx: int


def emulate_progress(path: Path) -> tuple[str | None, int, int | None]:
    """(latest published read_at, reads published so far, final total once it exited)."""
    text = path.read_text(errors="replace")
    progress = PROGRESS.findall(text)
    final = FINAL.search(text)
    latest, reads = progress[-1] if progress else (None, "0")
    return latest, int(reads.replace(",", "")), int(final[1].replace(",", "")) if final else None


def emulate_refusals(path: Path) -> int:
    """The 429s emulate met (it waits Retry-After and publishes again)."""
    text = path.read_text(errors="replace")
    return sum(
        '"status":429' in line for line in text.splitlines() if '"action":"publish_wait"' in line
    )


async def poll(session: aiohttp.ClientSession, name: str, url: str, polls: Polls) -> None:
    """GET ``url`` once a second until cancelled."""
    codes = polls.statuses.setdefault(name, Counter())
    next_at = time.monotonic()
    while True:
        try:
            async with session.get(url) as answer:
                body = await answer.read()
                codes[answer.status] += 1
                if answer.status >= 500:
                    polls.failures[f"{name} {answer.status} {body[:300].decode()}"] += 1
                elif name == "status":
                    polls.status = await answer.json()
                elif name == "metrics api" and (found := ENQUEUED.search(body)):
                    polls.reads_enqueued = int(float(found[1]))
        except (aiohttp.ClientError, TimeoutError) as error:
            polls.no_answer[f"{name}: {type(error).__name__}"] += 1
        next_at += POLL_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def pg_connections(stack: Stack) -> int:
    """Client connections to the stack's PostgreSQL, this one not counted."""
    async with await psycopg.AsyncConnection.connect(stack.postgres_url, autocommit=True) as conn:
        cursor = await conn.execute(
            b"SELECT count(*) FROM pg_stat_activity"
            b" WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def snapshot(label: str, run: Run) -> Snapshot:
    stack, emulate, polls = run.stack, run.emulate, run.polls
    pids = {**stack.processes(), "emulate": [emulate.pid] if emulate.poll() is None else []}
    status = polls.status
    queue = status.get("queue", {})
    latest_published, reads_published, _ = emulate_progress(stack.data_dir / "emulate.log")
    return Snapshot(
        label=label,
        rss_mb={role: sum(rss_mb(pid) for pid in group) for role, group in pids.items()},
        pids=pids,
        postgres_pss_mb=sum(pss_mb(pid) for pid in pids.get("postgres", [])),
        postgres_private_mb=sum(private_mb(pid) for pid in pids.get("postgres", [])),
        redis_used_mb=int((await run.redis.info("memory"))["used_memory"]) / MB,
        pg_connections=await pg_connections(stack),
        queue={k: int(queue.get(k, 0)) for k in ("waiting", "active", "delayed")},
        latest_stored=status.get("latestReadAt"),
        latest_published=latest_published,
        ingest_rate=float(status.get("ingestRateReadsPerSecond", 0.0)),
        rows=int(status.get("totalReads", 0)),
        reads_published=reads_published,
        five_xx=polls.five_xx,
    )


def print_snapshot(shot: Snapshot, run: Run) -> None:
    polls, usage = run.polls, run.usage
    rss = " | ".join(f"{role} {mb:.1f}" for role, mb in shot.rss_mb.items() if role != "postgres")
    postgres = len(shot.pids.get("postgres", []))
    print(f"== {shot.label}")
    print(
        f"  RSS MB: {rss} | postgres ({postgres} processes) {shot.rss_mb.get('postgres', 0):.1f}"
        f" RSS summed, {shot.postgres_pss_mb:.1f} PSS summed, {shot.postgres_private_mb:.1f}"
        " private (RssAnon)"
    )
    print(
        f"  Redis used_memory {shot.redis_used_mb:.2f} MB (peak so far"
        f" {usage.peak / MB:.2f} MB); PostgreSQL client connections {shot.pg_connections}"
    )
    queue = shot.queue
    print(
        f"  lag: queue waiting {queue['waiting']} + active {queue['active']} + delayed"
        f" {queue['delayed']}; latest read_at stored {shot.latest_stored}, of the last"
        f" completed publish {shot.latest_published}; ingesting {shot.ingest_rate:,.0f} reads/s"
    )
    requests = ", ".join(
        f"{name} {sum(codes.values()):,}" for name, codes in polls.statuses.items()
    )
    no_answer = sum(polls.no_answer.values())
    refusals = emulate_refusals(run.stack.data_dir / "emulate.log")
    print(
        f"  5xx so far: {shot.five_xx} (requests: {requests}; no answer: {no_answer});"
        f" 429s met by emulate: {refusals}"
    )
    print(
        f"  rows stored {shot.rows:,}; reads published {shot.reads_published:,} (emulate,"
        f" publishes completed), {polls.reads_enqueued:,} (API, enqueued)"
    )
    if run.emulate.poll() is not None:
        print(f"  emulate has exited ({run.emulate.returncode}); its output ends with:")
        print(tail(run.stack.data_dir / "emulate.log", 1000))


def checkpoints(minutes: float) -> list[float]:
    """After minute 1, at minute 5, in the middle and at the end (those within the run)."""
    return sorted({m for m in (1.0, 5.0, minutes / 2, minutes) if 0 < m <= minutes})


async def soak(run: Run, minutes: float) -> tuple[list[Snapshot], int, int]:
    """The checkpoints under load, then emulate stopped and ingestion drained:
    (snapshots, reads published, rows stored)."""
    stack = run.stack
    query = f"?tenantId={TENANT}"
    urls = {
        "status": f"{stack.base}/api/ami/scale/status{query}",
        "quickcheck": f"{stack.base}/api/ami/kpi/quickcheck{query}",
        "metrics api": stack.metrics_urls[0],
        **{f"metrics consumer-{n}": url for n, url in enumerate(stack.metrics_urls[1:], 1)},
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        pollers = [asyncio.create_task(poll(session, n, u, run.polls)) for n, u in urls.items()]
        try:
            shots = []
            started = time.monotonic()
            for minute in checkpoints(minutes):
                await asyncio.sleep(max(0.0, started + minute * 60 - time.monotonic()))
                shot = await snapshot(f"minute {minute:g}", run)
                print_snapshot(shot, run)
                shots.append(shot)
            await stop_emulate(run.emulate)
            reads, rows = await drain(run)
        finally:
            for poller in pollers:
                poller.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
    return shots, reads, rows


async def stop_emulate(emulate: subprocess.Popen[bytes]) -> None:
    """SIGTERM: emulate finishes the publish in progress and prints its total."""
    if emulate.poll() is None:
        emulate.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(emulate.wait, EMULATE_STOP_S)
    except subprocess.TimeoutExpired:
        emulate.kill()


async def drain(run: Run) -> tuple[int, int]:
    """Wait until the queue is empty and every published read is stored:
    (reads published, rows stored), rows counted in the table itself."""
    _, progress_reads, final = emulate_progress(run.stack.data_dir / "emulate.log")
    reads = progress_reads if final is None else final
    started = time.monotonic()
    rows = -1
    async with await psycopg.AsyncConnection.connect(
        run.stack.postgres_url, autocommit=True
    ) as conn:
        while time.monotonic() - started < DRAIN_WITHIN_S:
            cursor = await conn.execute(
                b"SELECT count(*) FROM meter_reads_electric WHERE tenant_id = %s", [TENANT]
            )
            row = await cursor.fetchone()
            rows = int(row[0]) if row else 0
            queue = run.polls.status.get("queue", {})
            if (
                rows >= reads
                and sum(queue.get(k, 1) for k in ("waiting", "active", "delayed")) == 0
            ):
                break
            await asyncio.sleep(POLL_S)
    print(f"== drained in {time.monotonic() - started:.1f} s after emulate stopped")
    return reads, rows


def memory_rows(shot: Snapshot) -> dict[str, float]:
    """MB by row of the memory table: each process's RSS, PostgreSQL's three ways."""
    rows = {role: mb for role, mb in shot.rss_mb.items() if role != "postgres"}
    rows["postgres RSS summed"] = shot.rss_mb.get("postgres", 0.0)
    rows["postgres PSS summed"] = shot.postgres_pss_mb
    rows["postgres private"] = shot.postgres_private_mb
    return rows


def print_memory_table(shots: list[Snapshot], base: Snapshot) -> list[tuple[str, float | None]]:
    """Memory at each checkpoint; returns the judged rows' growth from ``base`` to the end
    (None: the process was restarted meanwhile)."""
    end = shots[-1]
    print(f"{'memory MB':<22}" + "".join(f"{shot.label:>12}" for shot in shots) + "  growth")
    growths: list[tuple[str, float | None]] = []
    for row, after in memory_rows(end).items():
        cells = "".join(f"{memory_rows(shot).get(row, 0.0):>12.1f}" for shot in shots)
        before = memory_rows(base).get(row, 0.0)
        restarted = row in end.pids and base.pids.get(row) != end.pids[row]
        growth = None if restarted or not before else after / before - 1
        shown = "restarted or exited" if growth is None else f"{growth:+.1%}"
        if row in UNJUDGED:
            shown += f" (not judged: {UNJUDGED[row]})"
        else:
            growths.append((row, growth))
        print(f"{row:<22}{cells}  {shown}")
    return growths


def judge(shots: list[Snapshot], reads: int, rows: int, run: Run) -> bool:
    base = next((shot for shot in shots if shot.label == "minute 5"), shots[0])
    growths = print_memory_table(shots, base)
    worst_role, worst = max(growths, key=lambda item: float("inf") if item[1] is None else item[1])
    requests = sum(sum(codes.values()) for codes in run.polls.statuses.values())
    verdicts = [
        (
            f"RSS growth < {RSS_GROWTH_LIMIT:.0%} per process from {base.label} to the end",
            worst is not None and worst < RSS_GROWTH_LIMIT,
            f"largest: {worst_role} " + ("restarted" if worst is None else f"{worst:+.1%}"),
        ),
        (
            f"Redis used_memory < {REDIS_LIMIT_MB:g} MB throughout",
            run.usage.peak / MB < REDIS_LIMIT_MB,
            f"peak {run.usage.peak / MB:.2f} MB",
        ),
        ("no 5xx", run.polls.five_xx == 0, f"{run.polls.five_xx} of {requests:,} requests"),
        ("rows stored = reads published", rows == reads, f"{rows:,} rows, {reads:,} reads"),
    ]
    for failure, count in run.polls.failures.most_common(10):
        print(f"  5xx, {count}×: {failure}")
    if run.polls.no_answer:
        print(f"  no answer: {dict(run.polls.no_answer)}")
    print("targets:")
    for target, met, figure in verdicts:
        print(f"  {'met   ' if met else 'MISSED'}  {target}: {figure}")
    return all(met for _, met, _ in verdicts)


async def soak_with_redis(stack: Stack, emulate: subprocess.Popen[bytes], minutes: float) -> bool:
    idle_before, total_before = machine_cpu()
    with RedisUsage(stack.redis_url) as usage:
        client = aioredis.Redis.from_url(stack.redis_url)
        try:
            run = Run(stack, emulate, usage, client)
            shots, reads, rows = await soak(run, minutes)
        finally:
            await client.aclose()
    idle_after, total_after = machine_cpu()
    idle = (idle_after - idle_before) / max(total_after - total_before, 1)
    print(f"machine idle during the run: {idle:.0%} (other work on the machine included)")
    return judge(shots, reads, rows, run)


def start_emulate(stack: Stack, tenant: str) -> subprocess.Popen[bytes]:
    """``gridlens emulate`` at the cap (EMULATE_ARGS), its output in <data dir>/emulate.log."""
    with (stack.data_dir / "emulate.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "emulate", "--tenant", tenant, *EMULATE_ARGS],
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def end_emulate(emulate: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not finished its publish within EMULATE_STOP_S."""
    if emulate.poll() is None:
        emulate.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            emulate.wait(EMULATE_STOP_S)
        if emulate.poll() is None:
            emulate.kill()
            emulate.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    minutes = parser.parse_args(argv).minutes
    if not 1 <= minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be within 1..{MAX_MINUTES:g} (the day of backlog)")
    with running_stack(consumers=2, name="soak") as stack:
        print(
            f"soak: {minutes:g} minutes of gridlens emulate --tenant {TENANT}"
            f" {' '.join(EMULATE_ARGS)}; status, quickcheck and /metrics polled every"
            f" {POLL_S:g} s; stack at {stack.base}"
        )
        emulate = start_emulate(stack, TENANT)
        try:
            met = asyncio.run(soak_with_redis(stack, emulate, minutes))
        finally:
            end_emulate(emulate)
    print(f"soak: {'every target met' if met else 'targets missed (see above)'}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the stack has been stopped on the way out
        sys.exit(130)
