"""Status and quickcheck under load, while 25,000-meter publishes and their ingestion run.

A stack of its own (``bench/stack.py``); for 60 s, 50 loopback clients call
GET /api/ami/scale/status and GET /api/ami/kpi/quickcheck one request after
another (each client alternates), while one client publishes 25,000-meter
intervals back to back (a new readAt each). Prints p50/p99 per endpoint, the
request counts, the non-2xx answers by status, and each publish's fullest
1-second window of reads, computed from the stream entry ids (the server's
millisecond clock) that an observer process reads as they are written:
the hard cap is 2,500. Consumers delete acknowledged entries, so the observer
blocks on XREAD in a process of its own, and each publish's observed reads are
checked against the reads it reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import redis

from bench.procstat import cpu_seconds, machine_cpu
from bench.publish import fullest_second
from bench.stack import API_KEY, Stack, running_stack
from gridlens.entry import ENTRY_FIELD, decode
from gridlens.keys import Keys

DURATION_S = 60.0
CLIENTS = 50
TENANT = "LOAD_TENANT"
ENDPOINTS = ("/api/ami/scale/status", "/api/ami/kpi/quickcheck")
REQUEST_TIMEOUT_S = 60.0
PUBLISH_TIMEOUT_S = 180.0  # a 25,000-meter publish takes about 10 s when idle
DRAIN_WITHIN_S = 120.0
CAP_READS_PER_SECOND = 2_500
OBSERVER_BLOCK_MS = 200
OBSERVER_READY_S = 30.0
BODY = {
    "tenantId": TENANT,
    "intervalMinutes": 15,
    "batchSize": 500,
    "meterCount": 25_000,
    "feederCount": 25,
}


@dataclass
class Calls:
    """Latencies (s) and answers of one endpoint."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # no answer at all
    failures: Counter[str] = field(default_factory=Counter)  # non-2xx answers, by body


@dataclass
class Publish:
    read_at: str
    status: int
    wall_s: float
    body: dict[str, Any]


def observe_stream(redis_url: str, out_path: str, ready: EventType, stop: EventType) -> None:
    """Write ``<entry id ms> <reads> <publishId>`` per stream entry, as entries arrive."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's: it sets ``stop``
    client = redis.Redis.from_url(redis_url)
    client.ping()
    stream = Keys("gridlens").stream
    last_id: bytes | str = "0-0"  # a fresh stack: every entry from the first
    ready.set()
    with Path(out_path).open("w") as out:
        while not stop.is_set():
            reply: Any = client.xread({stream: last_id}, count=100, block=OBSERVER_BLOCK_MS)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    batch = decode(fields[ENTRY_FIELD])
                    out.write(f"{entry_id.split(b'-')[0].decode()} {len(batch)} ")
                    out.write(f"{batch.publish_id}\n")
                    last_id = entry_id
            out.flush()
    client.close()


async def client_loop(base: str, number: int, deadline: float, calls: dict[str, Calls]) -> None:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        turn = number
        while time.monotonic() < deadline:
            path = ENDPOINTS[turn % len(ENDPOINTS)]
            turn += 1
            started = time.perf_counter()
            try:
                async with session.get(f"{base}{path}", params={"tenantId": TENANT}) as answer:
                    body = await answer.read()
                    calls[path].statuses[answer.status] += 1
                    if answer.status // 100 != 2:
                        calls[path].failures[f"{answer.status} {body[:300].decode()}"] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                calls[path].errors[type(error).__name__] += 1
                continue
            calls[path].latencies_s.append(time.perf_counter() - started)


async def publisher_loop(base: str, deadline: float, publishes: list[Publish]) -> int:
    """Publish interval after interval until the deadline; returns the 429s met."""
    timeout = aiohttp.ClientTimeout(total=PUBLISH_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    refused = 0
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        while time.monotonic() < deadline:
            read_at = (first + timedelta(minutes=15) * len(publishes)).isoformat()
            started = time.perf_counter()
            async with session.post(
                f"{base}/api/ami/publish-once", json={**BODY, "readAt": read_at}
            ) as answer:
                body = await answer.json()
                retry_after_s = float(answer.headers.get("Retry-After", "5"))
            if answer.status == 429:
                refused += 1
                await asyncio.sleep(retry_after_s)
                continue
            publishes.append(Publish(read_at, answer.status, time.perf_counter() - started, body))
    return refused


async def drain(base: str, reads_published: int) -> tuple[int, float]:
    """Wait until the queue is empty and every read is stored: (rows stored, seconds)."""
    started = time.monotonic()
    rows = 0
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < DRAIN_WITHIN_S:
            url = f"{base}/api/ami/scale/status"
            async with session.get(url, params={"tenantId": TENANT}) as answer:
                status = await answer.json()
            if answer.status == 200:
                rows = int(status["totalReads"])
                queue = status["queue"]
                if rows >= reads_published and queue["waiting"] + queue["active"] == 0:
                    break
            await asyncio.sleep(0.5)
    return rows, time.monotonic() - started


async def run_load(stack: Stack) -> tuple[dict[str, Calls], list[Publish], int, int, float]:
    calls = {path: Calls() for path in ENDPOINTS}
    publishes: list[Publish] = []
    deadline = time.monotonic() + DURATION_S
    publisher = asyncio.create_task(publisher_loop(stack.base, deadline, publishes))
    await asyncio.gather(*(client_loop(stack.base, n, deadline, calls) for n in range(CLIENTS)))
    refused = await publisher
    reads = sum(int(p.body.get("reads", 0)) for p in publishes if p.status == 200)
    rows, drained_s = await drain(stack.base, reads)
    return calls, publishes, refused, rows, drained_s


def read_observed(path: Path) -> dict[str, list[tuple[int, int]]]:
    """The observed entries by publishId: (entry id ms, reads), in stream order."""
    by_publish: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        ms, reads, publish_id = line.split()
        by_publish[publish_id].append((int(ms), int(reads)))
    return by_publish


def print_calls(calls: dict[str, Calls]) -> None:
    print(f"{'endpoint':<26} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}", end="")
    print(f" {'max ms':>8}  non-2xx by status; no answer")
    for path, endpoint in calls.items():
        latencies_ms = np.array(endpoint.latencies_s or [0.0]) * 1000
        p50, p99 = np.percentile(latencies_ms, [50, 99])
        non_2xx = {code: n for code, n in sorted(endpoint.statuses.items()) if code // 100 != 2}
        requests = sum(endpoint.statuses.values())
        print(
            f"{path.rsplit('/', 1)[1]:<26} {requests:>9,} {requests / DURATION_S:>7.1f}"
            f" {p50:>8.1f} {p99:>8.1f} {latencies_ms.max():>8.1f}"
            f"  {sum(non_2xx.values())} {non_2xx or ''}; {dict(endpoint.errors) or 0}"
        )
    for path, endpoint in calls.items():
        for failure, count in endpoint.failures.most_common():
            print(f"  {path.rsplit('/', 1)[1]}, {count}×: {failure}")


def print_publishes(
    publishes: list[Publish], observed: dict[str, list[tuple[int, int]]], refused: int
) -> int:
    """One line per publish; returns the fullest 1-second window of them all."""
    print(f"publishes: {len(publishes)}, refused with 429: {refused}")
    for number, publish in enumerate(publishes, 1):
        body = publish.body
        if publish.status != 200:
            print(f"  {number}. readAt {publish.read_at}: {publish.status} {body.get('error')}")
            continue
        entries = observed.get(str(body["publishId"]), [])
        seen = sum(reads for _, reads in entries)
        api_rates = {k: v for k, v in body.items() if "PerSecond" in k or "fullest" in k.lower()}
        print(
            f"  {number}. readAt {publish.read_at[:16]}: {body['reads']:,} reads in"
            f" {body['jobs']} jobs, {publish.wall_s:.1f} s; fullest 1-s window of entry ids"
            f" {fullest_second(entries):,} (observed {seen:,} reads"
            f"{'' if seen == body['reads'] else ', INCOMPLETE'}); API says {api_rates}"
        )
    every = sorted(entry for entries in observed.values() for entry in entries)
    return fullest_second(every) if every else 0


def stack_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds so far by process group: api, consumers, postgres, redis, this benchmark
    (its clients). A PostgreSQL backend that exits meanwhile takes its seconds with it."""
    seconds: dict[str, float] = defaultdict(float)
    roles = {**stack.processes(), "benchmark": [os.getpid()]}
    for role, pids in roles.items():
        for pid in pids:
            with contextlib.suppress(OSError):
                seconds["consumers" if role.startswith("consumer") else role] += cpu_seconds(pid)
    return seconds


def print_cpu(before: dict[str, float], after: dict[str, float], wall_s: float) -> None:
    used = {role: after.get(role, 0.0) - before.get(role, 0.0) for role in after}
    shares = ", ".join(
        f"{role} {used.get(role, 0.0):.1f} s ({used.get(role, 0.0) / wall_s:.0%})"
        for role in ("api", "consumers", "postgres", "redis", "benchmark")
    )
    print(f"CPU in the {wall_s:.0f} s, seconds (share of one core): {shares}")


def main() -> None:
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    with running_stack(consumers=2, name="load") as stack:
        observed_path = stack.data_dir / "observed-entries.txt"
        observer = spawn.Process(
            target=observe_stream,
            args=(stack.redis_url, str(observed_path), ready, stop),
            daemon=True,
        )
        observer.start()
        try:
            if not ready.wait(OBSERVER_READY_S):
                raise RuntimeError("the stream observer did not start")
            print(
                f"load: {CLIENTS} clients on status and quickcheck for {DURATION_S:.0f} s, "
                f"25,000-meter publishes back to back; stack at {stack.base}, 2 consumers"
            )
            idle_before, total_before = machine_cpu()
            cpu_before, started = stack_cpu(stack), time.monotonic()
            calls, publishes, refused, rows, drained_s = asyncio.run(run_load(stack))
            cpu_after, wall_s = stack_cpu(stack), time.monotonic() - started
            idle_after, total_after = machine_cpu()
        finally:
            stop.set()
            observer.join(5)
            if observer.is_alive():
                observer.terminate()
        idle = (idle_after - idle_before) / max(total_after - total_before, 1)
        print(f"machine idle during the run: {idle:.0%} (other work on the machine included)")
        print_cpu(cpu_before, cpu_after, wall_s)
        print_calls(calls)
        fullest = print_publishes(publishes, read_observed(observed_path), refused)
        reads = sum(int(p.body.get("reads", 0)) for p in publishes if p.status == 200)
        verdict = "within" if fullest <= CAP_READS_PER_SECOND else "ABOVE"
        print(
            f"fullest 1-second window over the whole run: {fullest:,} reads"
            f" ({verdict} the cap of {CAP_READS_PER_SECOND:,})"
        )
        print(
            f"ingestion: {rows:,} rows stored of {reads:,} reads published"
            f" ({drained_s:.1f} s after the load to drain)"
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the stack has been stopped on the way out
        sys.exit(130)
