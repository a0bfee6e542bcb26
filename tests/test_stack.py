"""`make run` end to end, on embedded servers this test starts itself.

Whatever servers the rest of the suite uses, these tests always run the embedded
default in a data dir of their own, and the faults they cause (SIGKILL of a
child, Ctrl-C) only touch processes they started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from app.embedded import EmbeddedRedis, free_port
from tests import http
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
READY_WITHIN_S = 90.0
STOPPED_WITHIN_S = 60.0
RESTARTED_WITHIN_S = 20.0
INGESTED_WITHIN_S = 90.0
PUBLISH_TIMEOUT_S = 60.0  # a 25,000-meter publish is paced over about 10 s


def stack_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL") and not name.startswith("GRIDLENS_")
    }
    env.update(
        GRIDLENS_DATA_DIR=str(data_dir),
        GRIDLENS_PORT=str(port),
        GRIDLENS_CONSUMERS="1",
        GRIDLENS_API_KEY=TEST_API_KEY,
        GRIDLENS_SHUTDOWN_GRACE_S="5",
    )
    return env


def processes_of(data_dir: Path) -> dict[int, str]:
    """Every live process started for this data dir: they all inherit its variable, but
    Redis overwrites its environment with its process title, so it is found by its working
    directory, which is in the data dir."""
    marker = f"GRIDLENS_DATA_DIR={data_dir}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd").removesuffix(" (deleted)"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (marker in environ or cwd.is_relative_to(data_dir)) and state != "Z":
            found[int(entry.name)] = cmdline
    return found


class Stack:
    def __init__(self, data_dir: Path, port: int, log: Path, **settings: str) -> None:
        """``settings``: GRIDLENS_… variables on top of stack_env's."""
        self.data_dir = data_dir
        self.port = port
        self.log = log
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                ["make", "--no-print-directory", "-s", "run"],
                cwd=ROOT,
                env={**stack_env(data_dir, port), **settings},
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its own process group, as in a terminal
            )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < READY_WITHIN_S:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if http.request("GET", f"{self.base}/readyz")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready within {READY_WITHIN_S} s")

    def ctrl_c(self) -> None:
        """SIGINT to the whole foreground process group, as a terminal's Ctrl-C."""
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(STOPPED_WITHIN_S)
        deadline = time.monotonic() + 10
        while processes_of(self.data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in processes_of(self.data_dir):
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(pid, signal.SIGKILL)


def api_call(method: str, url: str, body: Any = None, timeout_s: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON body) of one request with the API key; HTTP errors are answers."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TEST_API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def kill_consumer(data_dir: Path) -> None:
    """SIGKILL the stack's consumer; return once the supervisor has started another."""
    consumers = [pid for pid, cmd in processes_of(data_dir).items() if "-m app consume" in cmd]
    assert len(consumers) == 1, consumers
    os.kill(consumers[0], signal.SIGKILL)
    deadline = time.monotonic() + RESTARTED_WITHIN_S
    while time.monotonic() < deadline:
        restarted = [pid for pid, cmd in processes_of(data_dir).items() if "-m app consume" in cmd]
        if restarted and restarted != consumers:
            return
        time.sleep(0.2)
    raise AssertionError("the killed consumer was not restarted")


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.kill()


def embedded_postgres_url(data_dir: Path) -> str:
    return f"postgresql://postgres@/gridlens?host={data_dir / 'postgres'}"


def embedded_redis_client(data_dir: Path) -> redis.Redis:
    conf = (data_dir / "redis" / "redis.conf").read_text().split()
    port = int(conf[conf.index("port") + 1])
    password = (data_dir / "redis" / "password").read_text().strip()
    return redis.Redis(host="127.0.0.1", port=port, password=password)


def test_make_run_serves_restarts_children_stops_cleanly_and_keeps_data(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    first = Stack(data_dir, port, tmp_path / "first.log")
    stacks.append(first)
    first.wait_ready()
    # The banner names the live page first, before the curl commands; the page is served.
    deadline = time.monotonic() + 10
    while "curl" not in first.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    addresses = [line for line in first.log.read_text().splitlines() if "http://" in line]
    assert addresses[0] == f"GridLens is up. The live page: http://localhost:{port}/"
    assert "curl" in addresses[-1]
    with urllib.request.urlopen(f"{first.base}/") as page:
        assert page.status == 200 and page.headers.get_content_type() == "text/html"

    status, body = http.request("POST", f"{first.base}/api/ami/publish-once", b'{"tenantId":"T"}')
    assert (status, body["ok"]) == (401, False)
    status, body = http.request(
        "POST",
        f"{first.base}/api/ami/publish-once",
        b'{"tenantId":"T"}',
        {"Authorization": "Bearer not-the-key-0123456789"},
    )
    assert (status, body) == (403, {"ok": False, "error": "wrong API key"})

    with psycopg.connect(embedded_postgres_url(data_dir), autocommit=True) as conn:
        conn.execute(
            b"INSERT INTO meter_reads_electric (tenant_id, meter_id, feeder_id, read_at,"
            b" interval_minutes, kwh, voltage)"
            b" VALUES ('MARKER', 'MARKER-MTR-00001', 'FEEDER_1', '2026-01-01', 15, 1.5, 120)"
        )
    with embedded_redis_client(data_dir) as client:
        client.set("{gridlens}:marker", b"kept")

    kill_consumer(data_dir)
    assert '"action":"child_restart"' in (tmp_path / "first.log").read_text()

    first.ctrl_c()
    assert processes_of(data_dir) == {}, "Ctrl-C left processes of the stack running"

    second = Stack(data_dir, port, tmp_path / "second.log")
    stacks.append(second)
    second.wait_ready()
    with psycopg.connect(embedded_postgres_url(data_dir)) as conn:
        row = conn.execute(b"SELECT kwh FROM meter_reads_electric WHERE tenant_id = 'MARKER'")
        assert row.fetchall() == [(1.5,)]
    with embedded_redis_client(data_dir) as client:
        assert client.get("{gridlens}:marker") == b"kept"
    second.ctrl_c()
    assert processes_of(data_dir) == {}


def test_up_with_a_wrong_redis_password_exits_with_one_line(
    tmp_path: Path, database_url: str
) -> None:
    server = EmbeddedRedis(tmp_path)  # its own Redis, with a password
    good_url = server.start()
    try:
        wrong_url = good_url.replace("redis://:", "redis://:wrong-", 1)
        env = stack_env(tmp_path / "data", free_port())
        env.update(DATABASE_URL=database_url, REDIS_URL=wrong_url)
        result = subprocess.run(
            [sys.executable, "-m", "app", "up"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 1
    plain_lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(plain_lines) == 1, result.stderr
    assert plain_lines[0].startswith("gridlens: Redis authentication failed at redis://:***@")
    assert "wrong-" not in result.stderr  # the password is never printed


# SPEC §9: the request's four commands (dry run, real run, status, quickcheck).
SPEC_PUBLISH = {
    "tenantId": "DEMO_TENANT",
    "intervalMinutes": 15,
    "batchSize": 500,
    "meterCount": 25_000,
    "feederCount": 25,
}
# What a real run must repeat; the rest (publishId, readAt, timings, rates) is of the moment.
REPEATED_PUBLISH_FIELDS = (
    *("ok", "dryRun", "tenantId", "intervalMinutes", "batchSize", "meterCount", "feederCount"),
    *("meterRange", "nextCursor", "cyclesToCoverFleet", "meters", "jobs", "reads"),
    *("skippedReads", "safetyWarnings"),
)


@dataclass(frozen=True)
class Round:
    """The (status, body) answers of the four commands, run once."""

    dry_run: tuple[int, Any]
    real_run: tuple[int, Any]
    status: tuple[int, Any]
    quickcheck: tuple[int, Any]

    def statuses(self) -> list[int]:
        return [self.dry_run[0], self.real_run[0], self.status[0], self.quickcheck[0]]


def four_commands(stack: Stack) -> Round:
    publish = f"{stack.base}/api/ami/publish-once"
    return Round(
        dry_run=api_call("POST", publish, {**SPEC_PUBLISH, "dryRun": True}),
        real_run=api_call("POST", publish, SPEC_PUBLISH, PUBLISH_TIMEOUT_S),
        status=ingested_status(stack),
        quickcheck=api_call("GET", f"{stack.base}/api/ami/kpi/quickcheck?tenantId=DEMO_TENANT"),
    )


def ingested_status(stack: Stack) -> tuple[int, Any]:
    """The status once every job is ingested and acknowledged, or the first that is not 200."""
    deadline = time.monotonic() + INGESTED_WITHIN_S
    while True:
        status, body = api_call("GET", f"{stack.base}/api/ami/scale/status?tenantId=DEMO_TENANT")
        if status != 200 or (
            body["totalDistinctMeters"] >= SPEC_PUBLISH["meterCount"]
            and body["queue"]["waiting"] == body["queue"]["active"] == 0
        ):
            return status, body
        assert time.monotonic() < deadline, f"not ingested within {INGESTED_WITHIN_S:.0f} s"
        time.sleep(0.2)


def shape(answer: Any) -> Any:
    """The keys of a JSON answer, nested objects included; list items and the keys of
    inFlightLimits (consumer process names) are not part of it."""
    if isinstance(answer, dict):
        return {
            key: None if key == "inFlightLimits" else shape(value) for key, value in answer.items()
        }
    return None


def test_the_four_commands_answer_alike_twice_and_after_a_consumer_restart(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    stack = Stack(tmp_path / "data", free_port(), tmp_path / "stack.log")
    stacks.append(stack)
    stack.wait_ready()
    rounds = [four_commands(stack), four_commands(stack)]
    kill_consumer(stack.data_dir)
    rounds.append(four_commands(stack))

    first = rounds[0]
    assert first.statuses() == [200, 200, 200, 200], first
    assert (first.dry_run[1]["computedBatches"], first.dry_run[1]["estimatedJobs"]) == (50, 50)
    assert (first.real_run[1]["jobs"], first.real_run[1]["reads"]) == (50, 25_000)
    assert first.status[1]["totalDistinctMeters"] == 25_000
    assert first.quickcheck[1]["intervals"] and first.quickcheck[1]["feederLoad"]
    for later in rounds[1:]:
        # A status of 500 here is state left on a pooled connection by an earlier round.
        assert later.statuses() == first.statuses(), later
        assert shape(later.dry_run[1]) == shape(first.dry_run[1])
        assert {**later.dry_run[1], "readAt": None} == {**first.dry_run[1], "readAt": None}
        assert shape(later.real_run[1]) == shape(first.real_run[1])
        assert [later.real_run[1][key] for key in REPEATED_PUBLISH_FIELDS] == [
            first.real_run[1][key] for key in REPEATED_PUBLISH_FIELDS
        ]
        assert shape(later.status[1]) == shape(first.status[1])
        assert later.status[1]["totalDistinctMeters"] == 25_000
        assert set(later.quickcheck[1]) == set(first.quickcheck[1])
        assert later.quickcheck[1]["intervals"] and later.quickcheck[1]["feederLoad"]
    assert stack.log.read_text().count('"action":"child_restart"') == 1  # the killed consumer
    stack.ctrl_c()
    assert processes_of(stack.data_dir) == {}, "Ctrl-C left processes of the stack running"
