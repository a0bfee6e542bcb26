"""Consumer processes under faults, each on a 25,000-meter publish (SPEC §5).

Real `gridlens consume` processes; the faults touch only what the test started
(its own consumer processes, and for the restart test its own PostgreSQL).
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from app.embedded import EmbeddedPostgres
from app.migrate import migrate
from consumer.main import serve_metrics
from gridlens.entry import ENTRY_FIELD
from gridlens.keys import Keys
from gridlens.queue import queue_depth
from gridlens.settings import Caps, Settings
from producer.publisher import Published, Publisher
from producer.request import parse_publish_request
from tests.conftest import Servers
from tests.processes import service_env, start

READ_AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CLAIM_IDLE_MS = 2_000


class Consumers:
    """`gridlens consume` processes of one test, with their JSON logs."""

    def __init__(
        self, database_url: str, redis_url: str, namespace: str, logs: Path, **settings: str
    ) -> None:
        self.env = service_env(
            database_url,
            redis_url,
            namespace,
            logs,
            GRIDLENS_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
            GRIDLENS_SHUTDOWN_GRACE_S="10",
            **settings,
        )
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 2) -> None:
        for _ in range(count):
            log = self.logs / f"consumer-{len(self.processes)}.log"
            self.processes.append(start("consume", self.env, log))

    def records(self, action: str) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.logs.glob("consumer-*.log")):
            for line in path.read_text().splitlines():
                if line.startswith("{") and f'"action":"{action}"' in line:
                    found.append(json.loads(line))
        return found

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def consumers(
    database_url: str, servers: Servers, namespace: str, tmp_path: Path
) -> Iterator[Consumers]:
    group = Consumers(database_url, servers.redis_url, namespace, tmp_path)
    yield group
    group.stop()


async def publish_interval(
    settings: Settings, redis: aioredis.Redis, tenant: str, meters: int = 25_000
) -> Published:
    request = parse_publish_request(
        {
            "tenantId": tenant,
            "meterCount": meters,
            "feederCount": 25,
            "readAt": READ_AT.isoformat(),
        },
        Caps(),
    )
    return await Publisher(redis, Keys(settings.redis_namespace), settings.caps).publish(
        request, []
    )


async def wait_ingested(
    database_url: str,
    redis: aioredis.Redis,
    keys: Keys,
    tenant: str,
    timeout_s: float = 90.0,
    meters: int = 25_000,
) -> int:
    """Rows for the tenant's READ_AT once the queue is empty (waiting and pending)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        depth = await queue_depth(redis, keys)
        count = await read_count(database_url, tenant)
        if (depth.waiting == 0 and depth.pending == 0 and count >= meters) or (
            asyncio.get_running_loop().time() > deadline
        ):
            return count
        await asyncio.sleep(0.25)


async def read_count(database_url: str, tenant: str) -> int:
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                b"SELECT count(*) FROM meter_reads_electric WHERE tenant_id = %s AND read_at = %s",
                [tenant, READ_AT],
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return -1  # the database is down for the moment


async def test_kill_9_of_a_consumer_mid_run_loses_and_doubles_nothing(
    consumers: Consumers,
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    database_url: str,
) -> None:
    keys = Keys(settings.redis_namespace)
    consumers.start(2)
    publish = asyncio.create_task(publish_interval(settings, redis, tenant))
    await asyncio.sleep(4)
    consumers.processes[0].send_signal(signal.SIGKILL)
    assert (await publish).reads == 25_000
    assert await wait_ingested(database_url, redis, keys, tenant) == 25_000
    assert await redis.xlen(keys.dead_letters) == 0
    assert consumers.processes[0].wait(5) == -signal.SIGKILL


async def test_a_postgres_restart_mid_run_loses_and_doubles_nothing(
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    tmp_path: Path,
    servers: Servers,
    namespace: str,
) -> None:
    own = EmbeddedPostgres(tmp_path / "own")  # this test's own server: it stops it
    database_url = own.start()
    try:
        await migrate(database_url)
        group = Consumers(
            database_url, servers.redis_url, namespace, tmp_path, GRIDLENS_MAX_DELIVERIES="2"
        )
        group.start(2)
        try:
            keys = Keys(settings.redis_namespace)
            publish = asyncio.create_task(publish_interval(settings, redis, tenant))
            await asyncio.sleep(3)
            await asyncio.to_thread(own.stop)
            await asyncio.sleep(CLAIM_IDLE_MS / 1000 * 3)  # long enough for claims to be tempted
            database_url = await asyncio.to_thread(own.start)
            assert (await publish).reads == 25_000
            assert await wait_ingested(database_url, redis, keys, tenant) == 25_000
            assert await redis.xlen(keys.dead_letters) == 0
            assert group.records("insert_retry"), "the outage was never noticed"
        finally:
            group.stop()
    finally:
        own.stop()


async def test_a_malformed_entry_is_dead_lettered_while_the_rest_is_ingested(
    consumers: Consumers,
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    database_url: str,
) -> None:
    keys = Keys(settings.redis_namespace)
    consumers.start(2)
    publish = asyncio.create_task(publish_interval(settings, redis, tenant))
    await asyncio.sleep(2)
    await redis.xadd(keys.stream, {ENTRY_FIELD: b'{"v": 1, "tenantId": "broken"}'})
    assert (await publish).reads == 25_000
    assert await wait_ingested(database_url, redis, keys, tenant) == 25_000
    dead: Any = await redis.xrange(keys.dead_letters)
    assert len(dead) == 1
    assert dead[0][1][b"error"].startswith(b"malformed entry: fields differ")


async def test_sigterm_mid_run_exits_cleanly_and_loses_nothing(
    consumers: Consumers,
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    database_url: str,
) -> None:
    keys = Keys(settings.redis_namespace)
    consumers.start(2)
    publish = asyncio.create_task(publish_interval(settings, redis, tenant))
    await asyncio.sleep(4)
    first_log = consumers.logs / "consumer-0.log"
    for _ in range(300):  # a busy machine may take longer than 4 s to start a process
        if '"action":"consumer_start"' in first_log.read_text():
            break
        await asyncio.sleep(0.1)
    consumers.processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(consumers.processes[0].wait, 30) == 0
    assert (await publish).reads == 25_000
    assert await wait_ingested(database_url, redis, keys, tenant) == 25_000
    assert await redis.xlen(keys.dead_letters) == 0
    assert any(r["action"] == "consumer_stop" for r in consumers.records("consumer_stop"))


async def test_republishing_an_interval_inserts_nothing_and_changes_no_row(
    consumers: Consumers,
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    database_url: str,
) -> None:
    keys = Keys(settings.redis_namespace)
    consumers.start(2)
    await publish_interval(settings, redis, tenant)
    assert await wait_ingested(database_url, redis, keys, tenant) == 25_000
    before = await fingerprint(database_url, tenant)
    second = await publish_interval(settings, redis, tenant)
    await wait_ingested(database_url, redis, keys, tenant)
    for _ in range(50):  # the last lines follow the last acknowledgements
        again = [r for r in consumers.records("job_done") if r["publishId"] == second.publish_id]
        if len(again) == 50:
            break
        await asyncio.sleep(0.1)
    assert len(again) == 50
    assert {record["insertCount"] for record in again} == {0}
    assert await fingerprint(database_url, tenant) == before


async def test_a_consumer_whose_metrics_port_is_taken_ingests_without_metrics(
    database_url: str,
    servers: Servers,
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    keys = Keys(settings.redis_namespace)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        group = Consumers(
            database_url, servers.redis_url, namespace, tmp_path, GRIDLENS_METRICS_PORT=str(port)
        )
        group.start(1)
        try:
            await publish_interval(settings, redis, tenant, meters=2_000)
            assert await wait_ingested(database_url, redis, keys, tenant, meters=2_000) == 2_000
            assert group.processes[0].poll() is None, "the consumer exited"
            [unavailable] = group.records("metrics_unavailable")
            assert unavailable["port"] == port
            assert group.records("metrics_start") == []
        finally:
            group.stop()


def test_a_metrics_address_that_cannot_be_bound_is_an_error_not_a_warning() -> None:
    with pytest.raises(OSError) as raised:
        serve_metrics("192.0.2.1", 9)  # TEST-NET-1: an address of no interface here
    assert raised.value.errno == errno.EADDRNOTAVAIL


async def fingerprint(database_url: str, tenant: str) -> str:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            b"SELECT md5(string_agg(concat_ws(',', meter_id, feeder_id, read_at, kwh, voltage,"
            b" ingested_at), ';' ORDER BY meter_id)) FROM meter_reads_electric"
            b" WHERE tenant_id = %s",
            [tenant],
        )
        row = await cursor.fetchone()
        return str(row[0]) if row else ""
