"""POST /api/ami/publish-once over real Redis and PostgreSQL (SPEC §4, §9)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from app.embedded import EmbeddedRedis
from bench.publish import fullest_second
from consumer.worker import Consumer
from gridlens.entry import ENTRY_FIELD, decode, encode
from gridlens.keys import Keys
from gridlens.queue import ensure_group, queue_depth
from gridlens.settings import HARD_MAX_READS_PER_SECOND, Settings
from tests.conftest import TEST_API_KEY
from tests.test_consumer import feeder_batch

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
Post = Callable[..., Awaitable[tuple[int, Any, Any]]]


@pytest.fixture
def post(client: TestClient[Any, Any], tenant: str) -> Post:
    async def send(
        body: Any = None, *, raw: bytes | None = None, **fields: Any
    ) -> tuple[int, Any, Any]:
        payload = (
            raw
            if raw is not None
            else orjson.dumps(body if body is not None else {"tenantId": tenant, **fields})
        )
        response = await client.post(
            "/api/ami/publish-once",
            data=payload,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        return response.status, await response.json(), response.headers

    return send


async def entries(redis: aioredis.Redis, keys: Keys) -> list[Any]:
    stream: Any = await redis.xrange(keys.stream)
    return [decode(fields[ENTRY_FIELD]) for _, fields in stream]


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_namespace)


async def test_the_dry_run_of_the_acceptance_plans_50_jobs_and_enqueues_nothing(
    post: Post, redis: aioredis.Redis, keys: Keys
) -> None:
    status, body, _ = await post(
        intervalMinutes=15, batchSize=500, meterCount=25_000, feederCount=25, dryRun=True
    )
    assert status == 200
    assert (
        body["computedMeters"],
        body["computedFeederCount"],
        body["computedBatches"],
        body["estimatedJobs"],
        body["safetyWarnings"],
    ) == (25_000, 25, 50, 50, [])
    assert body["estimatedRuntimeSeconds"] == 10.0
    assert body["meterRange"] == {"first": 1, "last": 25_000} and body["cyclesToCoverFleet"] == 1
    assert await redis.xlen(keys.stream) == 0


async def test_batch_100_truncates_and_two_publishes_cover_the_fleet(
    post: Post,
    client: TestClient[Any, Any],
    tenant: str,
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
) -> None:
    request = {"meterCount": 25_000, "feederCount": 25, "batchSize": 100}
    status, dry, _ = await post(dryRun=True, **request)
    assert (dry["computedMeters"], dry["estimatedJobs"], dry["cyclesToCoverFleet"]) == (
        20_000,
        200,
        2,
    )
    assert len(dry["safetyWarnings"]) == 1 and "truncated to 20000" in dry["safetyWarnings"][0]

    stop = asyncio.Event()
    consumer = asyncio.create_task(Consumer(settings, redis, pool).run(stop))
    status, first, _ = await post(**request)
    assert status == 200
    assert (first["meters"], first["jobs"], first["meterRange"], first["nextCursor"]) == (
        20_000,
        200,
        {"first": 1, "last": 20_000},
        20_001,
    )
    status, second, _ = await post(**request)
    assert (second["meters"], second["jobs"], second["meterRange"], second["nextCursor"]) == (
        5_000,
        50,
        {"first": 20_001, "last": 25_000},
        1,
    )
    for _ in range(300):
        report = await (await client.get(f"/api/ami/scale/status?tenantId={tenant}")).json()
        if report["totalDistinctMeters"] == 25_000 and report["queue"]["active"] == 0:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await consumer
    assert report["totalDistinctMeters"] == 25_000
    assert report["totalReads"] == 25_000
    assert report["queue"]["waiting"] == 0 and report["queue"]["completed"] == 250


async def test_a_publish_enqueues_one_feeder_per_job_within_the_caps(
    post: Post, redis: aioredis.Redis, keys: Keys, tenant: str
) -> None:
    status, body, _ = await post(
        meterCount=2_000, feederCount=10, batchSize=150, readAt="2026-11-25T10:07:00Z"
    )
    assert status == 200
    assert (body["jobs"], body["reads"], body["readAt"]) == (20, 2_000, "2026-11-25T10:00:00Z")
    batches = await entries(redis, keys)
    assert len(batches) == 20
    for batch in batches:
        assert len(batch) <= 150 and batch.tenant_id == tenant
        assert {(n - 1) % 10 + 1 for n in batch.meter_numbers} == {int(batch.feeder_id[7:])}
    assert sorted(n for b in batches for n in b.meter_numbers) == list(range(1, 2_001))


async def test_every_rate_figure_of_a_25000_meter_publish_is_within_the_cap(
    post: Post, redis: aioredis.Redis, keys: Keys
) -> None:
    status, body, _ = await post(meterCount=25_000, feederCount=25, readAt="2026-11-25T10:00:00Z")
    assert (status, body["reads"], body["jobs"]) == (200, 25_000, 50)
    stream: Any = await redis.xrange(keys.stream)
    written = [(int(entry_id.split(b"-")[0]), 500) for entry_id, _ in stream]
    assert fullest_second(written) <= HARD_MAX_READS_PER_SECOND  # an observer's own count
    assert body["fullestSecondReads"] <= HARD_MAX_READS_PER_SECOND
    assert body["readsPerSecond"] <= HARD_MAX_READS_PER_SECOND
    assert body["fullestSecondReads"] >= 500 and body["readsPerSecond"] > 0  # figures of it


async def test_an_outage_event_skips_its_rows(
    post: Post, client: TestClient[Any, Any], tenant: str
) -> None:
    event = {
        "tenantId": tenant,
        "type": "comms-outage",
        "feederId": "FEEDER_1",
        "fraction": 1,
        "startsAt": "2026-11-25T00:00:00Z",
        "durationMinutes": 1440,
    }
    assert (await client.post("/api/ami/events", json=event, headers=AUTH)).status == 201
    _, body, _ = await post(meterCount=1_000, feederCount=10, readAt="2026-11-25T10:00:00Z")
    assert (body["reads"], body["skippedReads"], body["jobs"]) == (900, 100, 9)


async def fill_queue(redis: aioredis.Redis, keys: Keys, tenant: str, entries: int) -> None:
    """``entries`` waiting jobs of one read each: a queue as deep as wanted, at once."""
    await ensure_group(redis, keys)
    filler = encode(feeder_batch(tenant, 1, meters=1))
    async with redis.pipeline(transaction=False) as pipe:
        for _ in range(entries):
            pipe.xadd(keys.stream, {ENTRY_FIELD: filler})
        await pipe.execute()


async def test_a_deep_queue_is_refused_with_429_and_nothing_is_enqueued(
    post: Post, redis: aioredis.Redis, keys: Keys, tenant: str
) -> None:
    await fill_queue(redis, keys, tenant, 501)
    status, body, headers = await post(meterCount=500)
    assert status == 429
    assert body == {
        "ok": False,
        "error": "Backpressure: queue too deep",
        "waiting": 501,
        "delayed": 0,
    }
    assert int(headers["Retry-After"]) > 0
    assert await redis.xlen(keys.stream) == 501
    status, dry, _ = await post(meterCount=500, dryRun=True)  # a dry run is never refused
    assert status == 200 and dry["queue"] == {"waiting": 501, "delayed": 0}


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (b"{bad json", 400, "request body is not valid JSON"),
        (b'"just a string"', 400, "request body must be a JSON object"),
        (b'{"tenantId": "T", "meterCount": "many"}', 400, "meterCount must be an integer"),
        (b'{"tenantId": "T", "meterCount": 1.5}', 400, "meterCount must be an integer"),
        (b'{"tenantId": "T", "batchSize": 0}', 400, "batchSize must be greater than 0"),
        (b'{"tenantId": "T", "feederCount": -3}', 400, "feederCount must be greater than 0"),
        (b'{"tenantId": "T", "intervalMinutes": 7}', 400, "intervalMinutes must be one of"),
        (b'{"tenantId": "T", "dryRun": "false"}', 400, "dryRun must be true or false"),
        (b'{"tenantId": "bad tenant!"}', 400, "tenantId must match"),
        (b'{"meterCount": 5}', 400, "tenantId is required"),
        (b'{"tenantId": "T", "meters": 5}', 400, "unknown field(s): meters"),
        (b'{"tenantId": "T", "readAt": "noon"}', 400, "readAt is not an ISO-8601"),
        (b'{"tenantId": "' + b"T" * 70_000 + b'"}', 413, "request body too large"),
    ],
)
async def test_malformed_input_is_4xx_and_nothing_is_enqueued(
    post: Post, redis: aioredis.Redis, keys: Keys, raw: bytes, status: int, error: str
) -> None:
    got, body, _ = await post(raw=raw)
    assert (got, body["ok"]) == (status, False)
    assert body["error"].startswith(error)
    assert await redis.xlen(keys.stream) == 0


async def test_a_publish_finishes_when_its_client_disconnects(
    client: TestClient[Any, Any], tenant: str, redis: aioredis.Redis, keys: Keys
) -> None:
    url = client.make_url("/api/ami/publish-once")
    body = {"tenantId": tenant, "meterCount": 5_000, "feederCount": 10}  # 10 jobs, ~1.8 s
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with session.post(
                url, json=body, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.5)
            ):
                pass
    assert await redis.xlen(keys.stream) < 10  # it was still going when the client left
    for _ in range(60):
        if await redis.xlen(keys.stream) == 10:
            break
        await asyncio.sleep(0.1)
    assert await redis.xlen(keys.stream) == 10
    assert (await queue_depth(redis, keys)).waiting == 10


async def test_redis_down_is_503_naming_redis(settings: Settings, tenant: str) -> None:
    app = create_app(dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0"))
    async with TestClient(TestServer(app)) as down:
        for dry_run in (True, False):
            response = await down.post(
                "/api/ami/publish-once",
                json={"tenantId": tenant, "dryRun": dry_run},
                headers=AUTH,
            )
            assert response.status == 503
            assert (await response.json())["error"].startswith("Redis is unreachable")


async def test_redis_failing_part_way_reports_what_went_out(
    settings: Settings, tenant: str, tmp_path: Any
) -> None:
    server = EmbeddedRedis(tmp_path)  # this test's own Redis: it stops it mid-publish
    url = server.start()
    # Gone for good, not failing over: the publish gives up after riding it out 2 s.
    app = create_app(dataclasses.replace(settings, redis_url=url, failover_timeout_s=2.0))
    try:
        async with TestClient(TestServer(app)) as test_client:
            publish = asyncio.create_task(
                test_client.post(
                    "/api/ami/publish-once",
                    json={"tenantId": tenant, "meterCount": 10_000, "feederCount": 10},
                    headers=AUTH,
                )
            )
            await asyncio.sleep(1.5)  # a few of the 20 jobs are out
            await asyncio.to_thread(server.stop)
            response = await publish
            body = await response.json()
    finally:
        server.stop()
    assert response.status == 503
    assert 0 < body["enqueuedJobs"] < 20 and body["plannedJobs"] == 20
    assert body["error"].startswith(
        f"Redis failed part-way through the publish: {body['enqueuedJobs']} of 20 jobs"
    )


async def test_a_publish_no_replica_confirms_is_503_and_leaves_nothing_behind(
    settings: Settings, tenant: str, redis: aioredis.Redis, keys: Keys
) -> None:
    """GRIDLENS_REDIS_MIN_REPLICAS=1 on a server without a replica: the admission itself is
    not confirmed, so it is undone and no job is written."""
    await redis.set(keys.cursor(tenant), 1_001)  # a truncated fleet's cursor, left as it was
    confirmed = dataclasses.replace(settings, redis_min_replicas=1, failover_timeout_s=1.0)
    async with TestClient(TestServer(create_app(confirmed))) as test_client:
        response = await test_client.post(
            "/api/ami/publish-once",
            json={"tenantId": tenant, "meterCount": 25_000, "batchSize": 100},
            headers=AUTH,
        )
        body = await response.json()
    assert response.status == 503
    assert body["enqueuedJobs"] == 0 and body["plannedJobs"] == 200
    assert "only 0 of the 1 replicas GRIDLENS_REDIS_MIN_REPLICAS asks for" in body["error"]
    assert await redis.xlen(keys.stream) == 0
    assert await redis.hlen(keys.reservations) == 0
    assert await redis.get(keys.cursor(tenant)) == b"1001"


async def test_lowered_caps_are_honoured(
    settings: Settings, tenant: str, redis: aioredis.Redis, keys: Keys
) -> None:
    lowered = dataclasses.replace(
        settings, caps=dataclasses.replace(settings.caps, batch_size=100, jobs_per_publish=20)
    )
    app = create_app(lowered)
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.post(
            "/api/ami/publish-once",
            json={"tenantId": tenant, "meterCount": 5_000, "feederCount": 10, "batchSize": 500},
            headers=AUTH,
        )
        body = await response.json()
    assert (body["batchSize"], body["jobs"], body["meters"]) == (100, 20, 2_000)
    assert max(len(b) for b in await entries(redis, keys)) <= 100
