"""Failover: the publish with confirmed writes on Sentinel, and recovery after a kill -9.

1. Publish with confirmed writes. A Sentinel deployment (a primary, its replica, three
   sentinels; tests/ha_redis.py) and a fresh migrated database (bench/servers.py); one API
   process (``python -m app api``) on the deployment, no consumers. For
   GRIDLENS_REDIS_MIN_REPLICAS 0, then 1 (the API is restarted in between: it reads the
   setting at its start), RUNS publishes of 25,000 meters (25 feeders, batches of 500),
   each at a readAt of its own. After each publish its entries are read from the primary
   (XRANGE) for an observer's fullest 1-second window of entry ids, and the stream is
   deleted. Printed per run: the HTTP call's wall time, the API's elapsedSeconds and
   fullestSecondReads, the observer's window; then the medians per setting.
2. Recovery after a kill -9. Each failover test (tests/test_failover_*.py) runs RUNS times
   as a pytest process of its own, with this environment (DATABASE_URL / REDIS_URL pass
   through). Every ``label: seconds s`` line it prints is collected: min / median / max
   per label, and how many runs passed (a pass: the 25,000 reads stored once each, no dead
   letter, every GridLens process still running; the tests assert it). A failed run is
   printed with the last lines of its output.

Targets: 25,000 meters with GRIDLENS_REDIS_MIN_REPLICAS=1 in ≤ 10.5 s, fullest 1-second
window ≤ 2,500; kill -9 to the first insert after it ≤ 15 s under Sentinel
(down-after-milliseconds 5000) and PostgreSQL; reads lost 0; consumers stuck 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.api_client import wait_ready
from app.embedded_base import free_port
from bench.publish import fullest_second
from bench.servers import bench_services
from gridlens.entry import ENTRY_FIELD, decode
from gridlens.keys import Keys
from tests.ha_redis import RedisNode, log_tail, sentinel_deployment

RUNS = 3  # of each publish setting and of each failover test
METERS = 25_000
FEEDERS = 25
BATCH_READS = 500
INTERVAL_MINUTES = 15
MIN_REPLICAS_SETTINGS = (0, 1)  # GRIDLENS_REDIS_MIN_REPLICAS
DOWN_AFTER_MS = 5_000  # sentinel down-after-milliseconds, as in the Sentinel failover test
TENANT = "BENCH_FAILOVER"
NAMESPACE = "gridlens-bench-failover"
API_KEY = "bench-key-0123456789abcdef"
# Explicit and in the past, on an hour; each publish an hour later than the one before.
FIRST_READ_AT = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
READY_WITHIN_S = 30.0
PUBLISH_TIMEOUT_S = 120.0
STOP_WITHIN_S = 30.0

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAILOVER_TESTS = (
    "tests/test_failover_sentinel.py",
    "tests/test_failover_cluster.py",
    "tests/test_failover_postgres.py",
)
# pytest-timeout stops a stuck test after 180 s; this stops a stuck pytest process.
TEST_RUN_TIMEOUT_S = 400.0
INTERRUPT_GRACE_S = 60.0  # after SIGINT, for pytest to stop the test's deployments
FAILED_OUTPUT_LINES = 30
FIGURE = re.compile(r"^(.+): ([0-9.]+) s$")

TARGETS_PUBLISH = (
    "targets: 25,000 meters with GRIDLENS_REDIS_MIN_REPLICAS=1 in ≤ 10.5 s; "
    "fullest 1-second window ≤ 2,500"
)
TARGETS_RECOVERY = (
    "targets: Sentinel (down-after-milliseconds 5000) ≤ 15 s; PostgreSQL ≤ 15 s; "
    "reads lost 0; consumers stuck 0"
)


# 1. Publish with confirmed writes.


@dataclass(frozen=True)
class PublishRun:
    wall_s: float  # the HTTP call, as the client saw it
    elapsed_s: float  # the API's elapsedSeconds
    api_fullest_second: int  # the API's fullestSecondReads
    observed_fullest_second: int  # of the stream's entry ids
    reads: int
    jobs: int
    stream_reads: int
    stream_entries: int

    def line(self, number: int) -> str:
        return (
            f"  run {number}: wall {self.wall_s:.2f} s, API elapsed {self.elapsed_s:.2f} s, "
            f"API fullest second {self.api_fullest_second:,} reads, observer's fullest "
            f"1-second window {self.observed_fullest_second:,} reads "
            f"({self.reads:,} reads in {self.jobs} jobs published; "
            f"{self.stream_reads:,} reads in {self.stream_entries} entries on the stream)"
        )


@contextlib.contextmanager
def api_process(
    database_url: str, redis_url: str, min_replicas: int, directory: Path
) -> Iterator[str]:
    """An API process with GRIDLENS_REDIS_MIN_REPLICAS=``min_replicas``, ready; its base URL."""
    port = free_port()
    log = directory / f"api-min-replicas-{min_replicas}.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GRIDLENS_API_KEY": API_KEY,
        "GRIDLENS_PORT": str(port),
        "GRIDLENS_REDIS_NAMESPACE": NAMESPACE,
        "GRIDLENS_REDIS_MIN_REPLICAS": str(min_replicas),
        "GRIDLENS_DATA_DIR": str(directory),
        "GRIDLENS_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as stderr:
        api = subprocess.Popen([sys.executable, "-m", "app", "api"], env=env, stderr=stderr)
    try:
        base = f"http://127.0.0.1:{port}"
        if not asyncio.run(wait_ready(base, within_s=READY_WITHIN_S)):
            raise SystemExit(
                f"bench failover: the API at {base} did not become ready:\n{log_tail(log)}"
            )
        yield base
    finally:
        api.terminate()
        try:
            api.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


def publish(base: str, read_at: datetime) -> tuple[float, dict[str, Any]]:
    """POST publish-once of METERS meters at ``read_at``: (wall seconds, the answer)."""
    body = {
        "tenantId": TENANT,
        "intervalMinutes": INTERVAL_MINUTES,
        "batchSize": BATCH_READS,
        "meterCount": METERS,
        "feederCount": FEEDERS,
        "readAt": read_at.isoformat(),
    }
    request = urllib.request.Request(
        f"{base}/api/ami/publish-once",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=PUBLISH_TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SystemExit(
            f"bench failover: the publish answered {error.code}: {error.read()[:500]!r}"
        ) from None
    return time.perf_counter() - started, answer


def drain_stream(primary: RedisNode) -> list[tuple[int, int]]:
    """(entry id ms, reads) of every entry on the stream, which is then deleted."""
    stream_key = Keys(NAMESPACE).stream
    client = primary.client(decode_responses=False)
    try:
        stream: Any = client.xrange(stream_key)
        client.delete(stream_key)
    finally:
        client.close()
    return [
        (int(entry_id.split(b"-")[0]), len(decode(fields[ENTRY_FIELD])))
        for entry_id, fields in stream
    ]


def publish_run(base: str, primary: RedisNode, read_at: datetime) -> PublishRun:
    wall_s, answer = publish(base, read_at)
    entries = drain_stream(primary)
    return PublishRun(
        wall_s=wall_s,
        elapsed_s=float(answer["elapsedSeconds"]),
        api_fullest_second=int(answer["fullestSecondReads"]),
        observed_fullest_second=fullest_second(entries),
        reads=int(answer["reads"]),
        jobs=int(answer["jobs"]),
        stream_reads=sum(reads for _ms, reads in entries),
        stream_entries=len(entries),
    )


def print_medians(min_replicas: int, runs: list[PublishRun]) -> None:
    print(
        f"  median of {len(runs)}, GRIDLENS_REDIS_MIN_REPLICAS={min_replicas}: "
        f"wall {statistics.median(run.wall_s for run in runs):.2f} s, "
        f"API elapsed {statistics.median(run.elapsed_s for run in runs):.2f} s, "
        f"API fullest second {statistics.median(run.api_fullest_second for run in runs):,.0f}, "
        f"observer's fullest window "
        f"{statistics.median(run.observed_fullest_second for run in runs):,.0f} reads"
    )


def publish_with_confirmed_writes() -> None:
    print(
        f"-- publish with confirmed writes: Sentinel (1 primary, 1 replica, 3 sentinels), "
        f"one API process, no consumers; {METERS:,} meters, {FEEDERS} feeders, "
        f"batch {BATCH_READS}, {RUNS} runs per setting"
    )
    with (
        tempfile.TemporaryDirectory(prefix="gridlens-bench-failover-") as root,
        bench_services() as urls,
        sentinel_deployment(Path(root) / "redis", down_after_ms=DOWN_AFTER_MS) as deployment,
    ):
        published = 0
        for min_replicas in MIN_REPLICAS_SETTINGS:
            print(f" GRIDLENS_REDIS_MIN_REPLICAS={min_replicas} (API started afresh)")
            runs: list[PublishRun] = []
            with api_process(urls.database_url, deployment.url, min_replicas, Path(root)) as base:
                for number in range(1, RUNS + 1):
                    read_at = FIRST_READ_AT + timedelta(hours=published)
                    published += 1
                    run = publish_run(base, deployment.primary(), read_at)
                    print(run.line(number), flush=True)
                    runs.append(run)
            print_medians(min_replicas, runs)
    print(TARGETS_PUBLISH)


# 2. Recovery after a kill -9.


@dataclass
class TestRun:
    passed: bool
    seconds: float
    stdout: str
    stderr: str

    def figures(self) -> list[tuple[str, float]]:
        """Every ``label: seconds s`` line the test printed."""
        return [
            (found[1], float(found[2]))
            for line in self.stdout.splitlines()
            if (found := FIGURE.match(line.strip()))
        ]

    def last_lines(self) -> str:
        lines = (self.stdout + self.stderr).splitlines()
        return "\n".join(f"    | {line}" for line in lines[-FAILED_OUTPUT_LINES:])


def run_failover_test(test_file: str) -> TestRun:
    """One pytest process of ``test_file``; after TEST_RUN_TIMEOUT_S it is interrupted
    (SIGINT: pytest stops the test's deployments), then killed."""
    command = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", test_file]
    started = time.monotonic()
    with subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as pytest:
        try:
            stdout, stderr = pytest.communicate(timeout=TEST_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.send_signal(signal.SIGINT)
            try:
                stdout, stderr = pytest.communicate(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                pytest.kill()
                stdout, stderr = pytest.communicate()
            stderr += f"\n(bench failover: interrupted after {TEST_RUN_TIMEOUT_S:.0f} s)"
    return TestRun(pytest.returncode == 0, time.monotonic() - started, stdout, stderr)


@dataclass
class TestRuns:
    test_file: str
    runs: list[TestRun] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(run.passed for run in self.runs)

    def figures(self) -> dict[str, list[float]]:
        """The seconds of each label, over the runs, in the order the labels came."""
        by_label: dict[str, list[float]] = {}
        for run in self.runs:
            for label, seconds in run.figures():
                by_label.setdefault(label, []).append(seconds)
        return by_label


def print_summary(results: list[TestRuns]) -> None:
    for result in results:
        print(
            f"  {result.test_file}: {result.passed}/{len(result.runs)} runs passed (a pass: "
            f"the {METERS:,} reads stored once each, no dead letter, every process running)"
        )
        for label, seconds in result.figures().items():
            print(
                f"    {label}: min {min(seconds):.2f} / median {statistics.median(seconds):.2f}"
                f" / max {max(seconds):.2f} s ({len(seconds)} runs)"
            )


def recovery_after_kill() -> None:
    print(f"-- recovery after a kill -9: each failover test run {RUNS} times as pytest")
    results = [TestRuns(test_file) for test_file in FAILOVER_TESTS]
    for result in results:
        for number in range(1, RUNS + 1):
            run = run_failover_test(result.test_file)
            result.runs.append(run)
            figures = ", ".join(f"{seconds:.2f} s" for _label, seconds in run.figures())
            outcome = "passed" if run.passed else "FAILED"
            print(
                f"  {result.test_file} run {number}: {outcome} in {run.seconds:.0f} s"
                f"{f' ({figures})' if figures else ''}",
                flush=True,
            )
            if not run.passed:
                print(run.last_lines())
    print_summary(results)
    print(TARGETS_RECOVERY)


def main() -> None:
    publish_with_confirmed_writes()
    recovery_after_kill()


if __name__ == "__main__":
    main()
