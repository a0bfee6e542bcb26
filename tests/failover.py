"""What the failover tests share: GridLens's processes on a deployment, a 25,000-meter
publish running beside the test, and the counts afterwards.

Each failover test (tests/test_failover_*.py) starts a replicated deployment of its own
(tests/ha_redis.py, tests/ha_postgres.py), runs the API and two consumers on it as
separate processes, kills the primary with SIGKILL part-way through the publish, and
then checks that every read is stored exactly once, nothing was dead-lettered, and the
same processes went on publishing and ingesting.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from app.embedded import free_port
from bench.publish import fullest_second
from gridlens.keys import Keys
from tests.conftest import TEST_API_KEY
from tests.ha_redis import RedisNode
from tests.http import request
from tests.processes import service_env, start, stop

METERS = 25_000
AFTER_METERS = 1_000  # the publish after the failover: publishing resumed
KILL_AT_ROWS = 5_000  # the primary dies once this many of the publish's reads are stored
PUBLISH_TIMEOUT_S = 120.0  # a publish that rides out a failover takes longer than 10 s
SETTLED_WITHIN_S = 90.0
READY_WITHIN_S = 30.0
POLL_S = 0.1
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
# Explicit, a day in the past, on an hour: the publish and its checks name the same rows.
READ_AT = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
# Entries a consumer left pending when its acknowledgement was lost are claimed this soon.
CLAIM_IDLE_MS = "3000"


@dataclass
class GridLens:
    """An API process and its consumers, on one deployment."""

    base: str
    api: subprocess.Popen[bytes]
    consumers: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.api, *self.consumers]

    def all_running(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def fullest_second_ingested(self) -> int:
        """The most reads in any 1-second window of the entries the consumers ingested, by
        their ids (the XADD's millisecond on the primary that took it): an observer's view
        of the rate limit, across both primaries of a failover."""
        entries = {
            record["jobId"]: int(record["metersCount"]) for record in self.log_lines("job_done")
        }
        return fullest_second(
            sorted((int(job_id.split("-")[0]), reads) for job_id, reads in entries.items())
        )

    def log_lines(self, action: str) -> list[dict[str, Any]]:
        """The JSON log records of every process with this action."""
        records = []
        for path in self.logs:
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("action") == action:
                        records.append(record)
        return records


@contextlib.contextmanager
def gridlens(
    database_url: str, redis_url: str, namespace: str, directory: Path, **settings: str
) -> Iterator[GridLens]:
    """The API and two consumers as processes of their own, ready."""
    env = service_env(
        database_url,
        redis_url,
        namespace,
        directory,
        GRIDLENS_API_KEY=TEST_API_KEY,
        GRIDLENS_CLAIM_IDLE_MS=CLAIM_IDLE_MS,
        **settings,
    )
    port = free_port()
    logs = [directory / name for name in ("api.log", "consumer-1.log", "consumer-2.log")]
    api = start("api", {**env, "GRIDLENS_PORT": str(port)}, logs[0])
    consumers = [start("consume", env, log) for log in logs[1:]]
    stack = GridLens(f"http://127.0.0.1:{port}", api, consumers, logs)
    try:
        wait_for("the API ready", lambda: ready(stack.base), READY_WITHIN_S)
        yield stack
    finally:
        stop(stack.processes)


def ready(base: str) -> bool:
    with contextlib.suppress(OSError):
        return request("GET", f"{base}/readyz")[0] == 200
    return False


def wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    """``check()``'s first truthy answer, polled; TimeoutError naming ``what`` after."""
    deadline = time.monotonic() + timeout_s
    while not (answer := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return answer


@dataclass
class Publish:
    """One publish-once call in a thread of its own: the test goes on while it paces."""

    base: str
    tenant: str
    meters: int = METERS
    read_at: datetime = READ_AT
    answer: tuple[int, Any] | None = None
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._post, name="publish")

    def __enter__(self) -> Publish:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._thread.join(PUBLISH_TIMEOUT_S)

    def _post(self) -> None:
        body = {
            "tenantId": self.tenant,
            "meterCount": self.meters,
            "feederCount": 25,
            "readAt": self.read_at.isoformat(),
        }
        self.answer = publish(self.base, body)

    def result(self) -> dict[str, Any]:
        """The publish's answer, once it came (200 expected)."""
        self._thread.join(PUBLISH_TIMEOUT_S)
        assert self.answer is not None, "the publish did not answer"
        status, answer = self.answer
        assert status == 200, answer
        assert isinstance(answer, dict)
        return answer


def publish(base: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /api/ami/publish-once, waiting as long as a failover may make it take."""
    prepared = urllib.request.Request(
        f"{base}/api/ami/publish-once",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **AUTH},
    )
    try:
        with urllib.request.urlopen(prepared, timeout=PUBLISH_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def stored_reads(database_url: str, tenant: str, read_at: datetime = READ_AT) -> tuple[int, int]:
    """(rows, distinct meters) of the tenant at ``read_at``; (-1, -1) while unreachable."""
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT meter_id) FROM public.meter_reads_electric"
                " WHERE tenant_id = %s AND read_at = %s",
                [tenant, read_at],
            ).fetchone()
    except psycopg.OperationalError:
        return -1, -1
    assert row is not None
    return int(row[0]), int(row[1])


def first_insert_after(database_url: str, tenant: str, since: datetime) -> datetime | None:
    """When the first of the tenant's reads stored after ``since`` was inserted."""
    with psycopg.connect(database_url, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT min(ingested_at) FROM public.meter_reads_electric"
            " WHERE tenant_id = %s AND ingested_at > %s",
            [tenant, since],
        ).fetchone()
    return None if row is None else row[0]


def wait_for_rows(database_url: str, tenant: str, rows: int, read_at: datetime = READ_AT) -> None:
    """Until the tenant has ``rows`` reads at ``read_at``."""
    wait_for(
        f"{rows} reads of {tenant} at {read_at:%Y-%m-%d %H:%M}",
        lambda: stored_reads(database_url, tenant, read_at)[0] >= rows,
        SETTLED_WITHIN_S,
    )


def report(what: str, seconds: float) -> None:
    """A figure the test measured, printed for the benchmark table (pytest -s shows it)."""
    print(f"\n{what}: {seconds:.2f} s")


def dead_letters(primary: RedisNode, keys: Keys) -> int:
    """Entries in the dead-letter stream, read on the Redis primary."""
    with primary.client() as client:
        return int(client.xlen(keys.dead_letters))


def wait_until_part_way(database_url: str, tenant: str) -> None:
    """Until KILL_AT_ROWS of the publish's reads are stored: the moment to kill a primary."""
    wait_for(
        f"{KILL_AT_ROWS} reads stored",
        lambda: stored_reads(database_url, tenant)[0] >= KILL_AT_ROWS,
        60,
    )


def check_every_read_once(
    stack: GridLens, database_url: str, tenant: str, answer: dict[str, Any]
) -> None:
    """The publish reported every read, within the cap by its count and by the ingested
    entries' ids, and the table holds each of them exactly once."""
    assert answer["reads"] == METERS and answer["jobs"] == 50
    assert answer["fullestSecondReads"] <= 2_500
    wait_for_rows(database_url, tenant, METERS)
    assert stack.fullest_second_ingested() <= 2_500
    assert stored_reads(database_url, tenant) == (METERS, METERS)


def report_resumed(label: str, database_url: str, tenant: str, since: datetime) -> None:
    """Print the time from ``since`` to the first of the tenant's reads inserted after it."""
    resumed_at = first_insert_after(database_url, tenant, since)
    assert resumed_at is not None
    report(label, (resumed_at - since).total_seconds())


def check_going_on(
    stack: GridLens, database_url: str, tenant: str, dead_letters: Callable[[], int]
) -> None:
    """The same processes publish and ingest another interval; nothing was dead-lettered
    and no side task of a consumer died."""
    later = READ_AT + timedelta(hours=1)
    with Publish(stack.base, tenant, meters=AFTER_METERS, read_at=later) as after:
        assert after.result()["reads"] == AFTER_METERS
    wait_for_rows(database_url, tenant, AFTER_METERS, later)
    assert dead_letters() == 0
    assert stack.all_running(), "a GridLens process stopped"
    assert not stack.log_lines("side_task_died")
