"""The safety limits under concurrency: two API processes, ten publishes at once.

An observer independent of the publishers checks what reached Redis: the stream
entry ids carry the server's millisecond clock at XADD, so they show every
1-second window; a sampler reads waiting + delayed while the publishes run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from app.api_client import wait_ready
from app.embedded import free_port
from bench.publish import fullest_second
from gridlens.entry import ENTRY_FIELD, decode, encode
from gridlens.keys import Keys
from gridlens.queue import ensure_group, queue_depth
from gridlens.settings import Settings
from tests.conftest import TEST_API_KEY, Servers
from tests.processes import service_env, start, stop
from tests.test_consumer import feeder_batch

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
PREFILLED = 460  # waiting entries before the publishes: room for five of the ten
JOBS_PER_PUBLISH = 10  # 5,000 meters on 10 feeders at 500


@pytest.fixture
def api_processes(
    servers: Servers, database_url: str, namespace: str, tmp_path: Path
) -> Iterator[list[str]]:
    env = service_env(
        database_url, servers.redis_url, namespace, tmp_path, GRIDLENS_API_KEY=TEST_API_KEY
    )
    ports = [free_port(), free_port()]
    processes = [
        start("api", {**env, "GRIDLENS_PORT": str(port)}, tmp_path / f"api-{port}.log")
        for port in ports
    ]
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        stop(processes)


async def test_ten_concurrent_publishes_on_two_processes_hold_every_limit(
    api_processes: list[str], settings: Settings, redis: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(settings.redis_namespace)
    tenants = [f"{namespace.replace('-', '_')}_{n}" for n in range(2)]
    await ensure_group(redis, keys)
    filler = encode(feeder_batch("FILLER", 1, meters=1))
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(PREFILLED):
            pipe.xadd(keys.stream, {ENTRY_FIELD: filler})
        await pipe.execute()

    depths: list[int] = []
    done = asyncio.Event()

    async def sample_depth() -> None:
        while not done.is_set():
            state = await queue_depth(redis, keys)
            depths.append(state.waiting + state.delayed)
            await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        for base in api_processes:
            assert await wait_ready(base, within_s=20), f"{base} not ready"

        async def publish(n: int) -> tuple[int, Any]:
            body = {"tenantId": tenants[n % 2], "meterCount": 5_000, "feederCount": 10}
            async with session.post(
                f"{api_processes[n % 2]}/api/ami/publish-once", json=body, headers=AUTH
            ) as response:
                return response.status, await response.json()

        sampler = asyncio.create_task(sample_depth())
        started = time.monotonic()
        results = await asyncio.gather(*(publish(n) for n in range(10)))
        elapsed = time.monotonic() - started
        done.set()
        await sampler

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 5, 429: 5}, results
    for status, body in results:
        if status == 429:
            assert body["error"] == "Backpressure: queue too deep"
            assert body["waiting"] + body["delayed"] > 500
        else:
            assert body["jobs"] == JOBS_PER_PUBLISH and body["reads"] == 5_000

    stream: Any = await redis.xrange(keys.stream)
    published = [(entry_id, decode(fields[ENTRY_FIELD])) for entry_id, fields in stream]
    published = [(entry_id, batch) for entry_id, batch in published if batch.tenant_id != "FILLER"]
    assert len(published) == 5 * JOBS_PER_PUBLISH
    assert max(len(batch) for _, batch in published) <= 500
    assert max(Counter(batch.publish_id for _, batch in published).values()) <= 200
    windows = [(int(entry_id.split(b"-")[0]), len(batch)) for entry_id, batch in published]
    fullest = fullest_second(sorted(windows))
    assert fullest <= 2_500
    assert fullest >= 2_000  # the publishes really were paced against the cap
    assert max(depths) <= 500 + JOBS_PER_PUBLISH
    assert elapsed >= (25_000 - 2_500) / 2_500  # 25,000 reads cannot go out faster
