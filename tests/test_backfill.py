"""backfill and emulate publish through the API, resume without gaps, and honour 429."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from api.app import create_app
from app.api_client import ApiClient
from app.backfill import Fleet, Progress, backfill, emulate
from app.embedded import EmbeddedRedis
from gridlens.entry import ENTRY_FIELD, decode, encode
from gridlens.keys import Keys
from gridlens.queue import ensure_group
from gridlens.settings import Settings
from producer.fleet import align_read_at
from tests.conftest import TEST_API_KEY
from tests.test_consumer import feeder_batch


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[ApiClient]:
    app = create_app(settings)
    server = TestServer(app)
    await server.start_server()
    async with ApiClient(str(server.make_url("/")), TEST_API_KEY) as api:
        yield api
    await server.close()


async def published(redis: aioredis.Redis, keys: Keys) -> Counter[datetime]:
    """Meters published per readAt."""
    stream: Any = await redis.xrange(keys.stream)
    counts: Counter[datetime] = Counter()
    for _, fields in stream:
        batch = decode(fields[ENTRY_FIELD])
        counts[batch.read_at] += len(batch)
    return counts


async def test_an_interrupted_backfill_resumes_without_gaps(
    client: ApiClient, settings: Settings, redis: aioredis.Redis, namespace: str
) -> None:
    fleet = Fleet(namespace.replace("-", "_"), meters=300, feeders=10, interval_minutes=60)
    progress = Progress(settings.data_dir, "backfill", fleet)
    lines: list[str] = []
    five_done = asyncio.Event()

    def report(line: str) -> None:
        lines.append(line)
        if len(lines) == 5:
            five_done.set()

    first = asyncio.create_task(backfill(client, fleet, 1, progress, report))
    await asyncio.wait_for(five_done.wait(), 30)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert progress.load() is not None
    await backfill(client, fleet, 1, progress, lines.append)
    counts = await published(redis, Keys(settings.redis_namespace))
    end = align_read_at(datetime.now(UTC), 60)
    expected = {end - timedelta(hours=hours) for hours in range(24)}
    assert set(counts) == expected  # every interval of the day, nothing else
    assert all(count in (300, 600) for count in counts.values())  # one repeated at most
    assert sum(1 for count in counts.values() if count == 600) <= 1
    assert "ETA" in lines[-1] and "24/24 intervals" in lines[-1]
    assert progress.load() is None  # done: nothing left to resume


async def test_backfill_waits_out_backpressure(
    client: ApiClient, settings: Settings, redis: aioredis.Redis, namespace: str
) -> None:
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    filler = encode(feeder_batch("FILLER", 1, meters=1))
    ids = [await redis.xadd(keys.stream, {ENTRY_FIELD: filler}) for _ in range(501)]
    fleet = Fleet(namespace.replace("-", "_"), meters=100, feeders=10, interval_minutes=60)
    task = asyncio.create_task(
        backfill(client, fleet, 1, Progress(settings.data_dir, "backfill", fleet))
    )
    await asyncio.sleep(1.0)
    assert not task.done()  # refused with 429: waiting for Retry-After
    await redis.xdel(keys.stream, *ids)
    assert await asyncio.wait_for(task, 60) == 24 * 100


async def test_emulate_publishes_due_intervals_and_never_ahead_of_the_clock(
    client: ApiClient, settings: Settings, redis: aioredis.Redis, namespace: str
) -> None:
    fleet = Fleet(namespace.replace("-", "_"), meters=100, feeders=10, interval_minutes=60)
    progress = Progress(settings.data_dir, "emulate", fleet)
    stop = asyncio.Event()
    task = asyncio.create_task(
        emulate(client, fleet, 3_600.0, progress, stop, catch_up=timedelta(hours=3))
    )
    await asyncio.sleep(4)  # simulated time runs an hour per second: 3 hours to catch up
    stop.set()
    await asyncio.wait_for(task, 30)
    counts = await published(redis, Keys(settings.redis_namespace))
    now = datetime.now(UTC)
    assert 3 <= len(counts) <= 4 and max(counts) <= now
    assert set(counts.values()) == {100}


async def test_a_publish_waits_out_a_redis_outage_and_goes_through(
    settings: Settings, tmp_path: Path, namespace: str
) -> None:
    """Emulation runs for days: a server that goes away and comes back costs a wait, not
    the run. The API answers 503 while Redis is down; the client waits Retry-After and
    publishes again."""
    server = EmbeddedRedis(tmp_path)  # this test's own Redis, killed and started again
    url = server.start()
    try:
        os.kill(int((tmp_path / "redis" / "redis.pid").read_text()), signal.SIGKILL)
        app = create_app(dataclasses.replace(settings, redis_url=url))
        async with (
            TestServer(app) as api_server,
            ApiClient(str(api_server.make_url("/")), TEST_API_KEY) as api,
        ):
            body = {"tenantId": namespace.replace("-", "_"), "meterCount": 100}
            publish = asyncio.create_task(api.publish(body))
            await asyncio.sleep(1.0)
            assert not server.alive() and not publish.done()  # answered 503, waiting
            await asyncio.to_thread(server.restart)
            answer = await asyncio.wait_for(publish, 30)
        assert (answer.status, answer.body["reads"]) == (200, 100)
    finally:
        server.stop()
