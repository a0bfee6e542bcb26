"""The consumer skeleton over real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from consumer.worker import Consumer
from gridlens.entry import ENTRY_FIELD, ReadBatch, encode
from gridlens.keys import Keys
from gridlens.queue import ensure_group, queue_depth
from gridlens.scripts import QueueDepth, Scripts
from gridlens.settings import Settings

READ_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def feeder_batch(tenant_id: str, feeder: int, meters: int = 500, first: int = 0) -> ReadBatch:
    """The feeder's meters number first .. first + meters - 1 of 25 feeders, in one batch."""
    numbers = [feeder + 25 * n for n in range(first, first + meters)]
    return ReadBatch(
        publish_id="test",
        tenant_id=tenant_id,
        feeder_id=f"FEEDER_{feeder}",
        read_at=READ_AT,
        interval_minutes=15,
        meter_numbers=numbers,
        kwh=[0.1 + number / 10_000 for number in numbers],
        voltage=[120.0 + (number % 7) / 10 for number in numbers],
    )


async def run_until_drained(
    settings: Settings,
    client: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    name: str | None = None,
) -> None:
    """Run one consumer until the stream is empty and nothing is pending."""
    stop = asyncio.Event()
    keys = Keys(settings.redis_namespace)
    running = asyncio.create_task(Consumer(settings, client, pool, name=name).run(stop))
    for _ in range(400):
        depth = await queue_depth(client, keys)
        if depth.waiting == 0 and depth.pending == 0:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 10)


async def rows(pool: AsyncConnectionPool[Any], tenant_id: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT meter_id, feeder_id, read_at, interval_minutes, kwh, voltage"
            b" FROM meter_reads_electric WHERE tenant_id = %s ORDER BY meter_id",
            [tenant_id],
        )
        return list(await cursor.fetchall())


async def until_rows(pool: AsyncConnectionPool[Any], tenant_id: str, count: int) -> None:
    """Until the tenant has ``count`` rows, for up to 10 s."""
    for _ in range(200):
        if len(await rows(pool, tenant_id)) >= count:
            return
        await asyncio.sleep(0.05)


async def test_entries_are_inserted_acknowledged_and_removed(
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    for feeder in (1, 2, 3):
        await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, feeder))})
    with caplog.at_level(logging.INFO, logger="consumer.worker"):
        await run_until_drained(settings, redis, pool)
    stored = await rows(pool, tenant)
    assert len(stored) == 1_500
    assert stored[0] == (f"{tenant}-MTR-00001", "FEEDER_1", READ_AT, 15, 0.1001, 120.1)
    assert await redis.xlen(keys.stream) == 0  # acknowledged entries do not pile up
    jobs = [record for record in caplog.records if getattr(record, "action", "") == "job_done"]
    assert sorted(job.__dict__["feederId"] for job in jobs) == ["FEEDER_1", "FEEDER_2", "FEEDER_3"]
    assert {job.__dict__["insertCount"] for job in jobs} == {500}
    assert {job.__dict__["metersCount"] for job in jobs} == {500}
    assert all({"jobId", "elapsedMs", "waiting", "pending"} <= job.__dict__.keys() for job in jobs)


async def test_a_redelivered_batch_inserts_nothing_and_changes_no_row(
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 4))})
    await run_until_drained(settings, redis, pool)
    before = await rows(pool, tenant)
    await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 4))})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="consumer.worker"):
        await run_until_drained(settings, redis, pool)
    assert await rows(pool, tenant) == before
    jobs = [record for record in caplog.records if getattr(record, "action", "") == "job_done"]
    assert [job.__dict__["insertCount"] for job in jobs] == [0]


async def test_a_malformed_entry_is_dead_lettered_and_the_rest_ingested(
    settings: Settings, redis: aioredis.Redis, pool: AsyncConnectionPool[Any], namespace: str
) -> None:
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    await redis.xadd(keys.stream, {ENTRY_FIELD: b'{"v": 1, "meters": "nope"}'})
    await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 5))})
    await run_until_drained(settings, redis, pool)
    assert len(await rows(pool, tenant)) == 500
    dead: Any = await redis.xrange(keys.dead_letters)
    assert len(dead) == 1
    assert dead[0][1][b"error"].startswith(b"malformed entry: fields differ")
    assert dead[0][1][ENTRY_FIELD] == b'{"v": 1, "meters": "nope"}'


async def test_pending_entries_of_a_restarted_consumer_are_finished_first(
    settings: Settings, redis: aioredis.Redis, pool: AsyncConnectionPool[Any], namespace: str
) -> None:
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 6))})
    # A consumer of this name took the entry and died before acknowledging it.
    await redis.xreadgroup("ingest", "restarted", {keys.stream: ">"}, count=1)
    assert (await queue_depth(redis, keys)).pending == 1
    await run_until_drained(settings, redis, pool, name="restarted")
    assert len(await rows(pool, tenant)) == 500


async def test_the_insert_is_one_binary_statement(pool: AsyncConnectionPool[Any]) -> None:
    from consumer.ingest import insert_batch

    batch = feeder_batch("ONE_STATEMENT", 7, meters=3)
    assert await insert_batch(pool, batch) == 3
    assert await insert_batch(pool, batch) == 0
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                b"INSERT INTO meter_reads_electric (tenant_id, meter_id, feeder_id, read_at,"
                b" interval_minutes, kwh, voltage) VALUES ('T', 'm', 'f', now(), 15, -1, 120)"
            )


async def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(
    settings: Settings, redis: aioredis.Redis, pool: AsyncConnectionPool[Any], namespace: str
) -> None:
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    for feeder in (8, 9):
        await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, feeder))})
    await redis.xreadgroup("ingest", "dead-host-1", {keys.stream: ">"}, count=2)
    live = dataclasses.replace(settings, claim_idle_ms=1_000)
    started = time.monotonic()
    await run_until_drained(live, redis, pool)
    assert time.monotonic() - started >= 1.0  # not before the entries were idle long enough
    assert len(await rows(pool, tenant)) == 1_000
    assert await redis.xlen(keys.dead_letters) == 0


async def test_an_entry_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = "POISON_" + namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    async with pool.connection() as conn:
        await conn.execute(POISON_TRIGGER)
    try:
        await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 1))})
        await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(namespace[5:], 2))})
        strict = dataclasses.replace(settings, claim_idle_ms=1_000, max_deliveries=3)
        with caplog.at_level(logging.INFO, logger="consumer.worker"):
            await run_until_drained(strict, redis, pool)
    finally:
        async with pool.connection() as conn:
            await conn.execute(b"DROP TRIGGER IF EXISTS poison ON meter_reads_electric")
    dead: Any = await redis.xrange(keys.dead_letters)
    assert len(dead) == 1
    assert dead[0][1][b"deliveries"] == b"3"
    assert dead[0][1][b"error"].startswith(b"failed 3 deliveries; last: RaiseException: poison")
    failures = [r for r in caplog.records if getattr(r, "action", "") == "job_failed"]
    assert [r.__dict__["deliveries"] for r in failures] == [1, 2]
    assert len(await rows(pool, namespace[5:])) == 500  # the healthy entry went in
    assert await redis.hlen(keys.errors) == 0


POISON_TRIGGER = b"""
CREATE OR REPLACE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'poison'; END $$;
DROP TRIGGER IF EXISTS poison ON meter_reads_electric;
CREATE TRIGGER poison BEFORE INSERT ON meter_reads_electric
FOR EACH ROW WHEN (NEW.tenant_id LIKE 'POISON%') EXECUTE FUNCTION poison();
"""


async def status_from_rollups_and_scan(
    pool: AsyncConnectionPool[Any], tenant: str
) -> tuple[Any, Any]:
    """(meters, reads, latest, kWh delivered, kWh received) of the tenant, from the rollups
    and from the table."""
    from gridlens.sqlfiles import query

    async with pool.connection() as conn:
        rolled = await (
            await conn.execute(query("tenant_status"), {"tenant_id": tenant})
        ).fetchone()
        scanned = await (
            await conn.execute(query("tenant_status_scan"), {"tenant_id": tenant})
        ).fetchone()
    assert rolled is not None
    return rolled[:6], scanned  # the last: the longest lateness, which rows do not keep


async def test_status_rollups_match_the_table_exactly(pool: AsyncConnectionPool[Any]) -> None:
    from consumer.ingest import insert_batch

    tenant = "ROLLUP_" + uuid.uuid4().hex[:8]
    later = dataclasses.replace(feeder_batch(tenant, 1), read_at=READ_AT.replace(hour=13))
    for batch in (
        feeder_batch(tenant, 1, 40),
        feeder_batch(tenant, 1),
        feeder_batch(tenant, 2),
        later,
        feeder_batch(tenant, 2, 10),
    ):
        await insert_batch(pool, batch)
    rolled, scanned = await status_from_rollups_and_scan(pool, tenant)
    assert rolled == scanned  # meters, reads, latest, kWh delivered and received
    assert rolled is not None and rolled[:3] == (1_000, 1_500, READ_AT.replace(hour=13))
    assert rolled[3] > 0 and rolled[4] == 0  # these batches received nothing


async def test_jobs_of_one_feeder_and_interval_do_not_wait_for_each_other(
    database_url: str,
) -> None:
    """Consecutive jobs of one feeder run together; neither waits for the other's commit."""
    from consumer.ingest import insert_reads
    from gridlens.sqlfiles import query

    tenant = "NOWAIT_" + uuid.uuid4().hex[:8]
    first, second = feeder_batch(tenant, 1), feeder_batch(tenant, 1, first=500)
    async with (
        await psycopg.AsyncConnection.connect(database_url) as holding,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as other,
    ):
        assert await insert_reads(holding, first) == 500  # its transaction stays open
        await other.execute(b"SET lock_timeout = '2s'")  # a wait would fail, not hang
        assert await insert_reads(other, second) == 500
        await holding.commit()
        rolled = await (
            await other.execute(query("tenant_status"), {"tenant_id": tenant})
        ).fetchone()
    assert rolled is not None and rolled[:3] == (1_000, 1_000, READ_AT)


async def test_held_connections_are_reused_and_given_back_when_in_doubt(
    pool: AsyncConnectionPool[Any],
) -> None:
    from consumer.ingest import HeldConnections

    held = HeldConnections(pool)
    held.uses = 3

    def checkouts() -> int:
        return int(pool.get_stats().get("requests_num", 0))

    before = checkouts()
    for _ in range(3):  # one checkout serves `uses` jobs
        async with held.connection(keep=1) as conn:
            await conn.execute(b"SELECT 1")
    assert checkouts() - before == 1
    async with held.connection(keep=1) as conn:  # the fourth job: a fresh hold
        await conn.execute(b"SELECT 1")
    assert checkouts() - before == 2
    with pytest.raises(psycopg.errors.DivisionByZero):
        async with held.connection(keep=1) as conn:
            await conn.execute(b"SELECT 1 / 0")
    async with held.connection(keep=0) as conn:  # the failed one went back: a checkout
        cursor = await conn.execute(b"SELECT 2")
        assert await cursor.fetchone() == (2,)
    assert checkouts() - before == 3
    assert await available(pool, held=0) == pool.get_stats()["pool_size"]  # none held
    async with held.connection(keep=1) as conn:
        await conn.execute(b"SELECT 1")
    assert await available(pool, held=1) == pool.get_stats()["pool_size"] - 1  # held
    held.idle_s = 0.0  # as if a quiet minute had passed
    await held.give_back_idle()
    assert await available(pool, held=0) == pool.get_stats()["pool_size"]


async def available(pool: AsyncConnectionPool[Any], held: int) -> int:
    """Connections in the pool, once those given back have been reset by its worker
    (at most 2 s after the pool holds all but ``held``)."""
    for _ in range(200):
        stats = pool.get_stats()
        if stats["pool_available"] == stats["pool_size"] - held:
            break
        await asyncio.sleep(0.01)
    return int(pool.get_stats()["pool_available"])


async def test_rollups_can_be_rebuilt_from_the_table(pool: AsyncConnectionPool[Any]) -> None:
    from gridlens.sqlfiles import query

    tenant = "REBUILT_" + uuid.uuid4().hex[:8]
    async with pool.connection() as conn:
        await conn.execute(
            b"INSERT INTO meter_reads_electric (tenant_id, meter_id, feeder_id, read_at,"
            b" interval_minutes, kwh, voltage) VALUES (%s, 'm1', 'FEEDER_1', now(), 15, 1, 120)",
            [tenant],
        )
    async with pool.connection() as conn:
        before = await (
            await conn.execute(query("tenant_status"), {"tenant_id": tenant})
        ).fetchone()
        await conn.execute(query("rebuild_rollups"))
    async with pool.connection() as conn:
        after = await (await conn.execute(query("tenant_status"), {"tenant_id": tenant})).fetchone()
    assert before is not None and before[:2] == (0, 0)  # written outside the consumer
    assert after is not None and after[:2] == (1, 1)


async def test_meters_are_registered_again_after_a_rebuild_forgot_them(
    pool: AsyncConnectionPool[Any],
) -> None:
    """The meter-set registry is cleared with the rollups: a set's next job registers its
    meters again, so status keeps COUNT(DISTINCT meter_id) after rows were deleted."""
    from consumer.ingest import insert_batch
    from gridlens.sqlfiles import query

    tenant = "SETS_" + uuid.uuid4().hex[:8]
    await insert_batch(pool, feeder_batch(tenant, 1))
    async with pool.connection() as conn:
        await conn.execute(  # half the meters' reads deleted outside the consumer
            b"DELETE FROM meter_reads_electric WHERE tenant_id = %s AND meter_id > %s",
            [tenant, f"{tenant}-MTR-06251"],
        )
        await conn.execute(query("rebuild_rollups"))
    await insert_batch(
        pool, dataclasses.replace(feeder_batch(tenant, 1), read_at=READ_AT.replace(hour=13))
    )
    rolled, scanned = await status_from_rollups_and_scan(pool, tenant)
    assert rolled == scanned
    assert rolled is not None and rolled[0] == 500


async def test_an_acknowledgement_reads_new_entries_for_the_slots_it_frees(
    redis: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    ids = [await redis.xadd(keys.stream, {ENTRY_FIELD: f"job {n}"}) for n in range(5)]
    await redis.xreadgroup("ingest", "c1", {keys.stream: ">"}, count=2)  # c1 runs jobs 0, 1
    done = await Scripts(redis, keys).ack(
        entry_ids=ids[:2],  # done: 0 and 1
        reads_inserted=1000,
        ingested_second=keys.ingested_second(0),
        counter_ttl_s=120,
        consumer="c1",
        refill=2,  # read 2 more
    )
    assert [entry_id for entry_id, _ in done.fresh] == ids[2:4]
    assert done.fresh[0][1] == {ENTRY_FIELD: b"job 2"}
    assert done.depth == QueueDepth(waiting=1, pending=2, delayed=0, delayed_reads=0)
    assert await redis.xlen(keys.stream) == 3  # acknowledged entries are deleted
    pending = await redis.xpending_range(keys.stream, "ingest", "-", "+", 10, consumername="c1")
    assert [row["message_id"] for row in pending] == ids[2:4]
    assert int(await redis.get(keys.completed) or 0) == 2


async def test_a_consumer_group_lost_from_redis_is_created_again_and_its_entries_read(
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As on a new primary that never received the stream: the running consumer meets
    NOGROUP, creates the group again from id 0, and ingests what the stream holds."""
    tenant = namespace.replace("-", "_")
    keys = Keys(settings.redis_namespace)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="consumer.fetch"):
        running = asyncio.create_task(Consumer(settings, redis, pool).run(stop))
        try:
            await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 1))})
            await until_rows(pool, tenant, 500)
            await redis.delete(keys.stream)  # the group goes with it
            await redis.xadd(keys.stream, {ENTRY_FIELD: encode(feeder_batch(tenant, 2))})
            await until_rows(pool, tenant, 1_000)
        finally:
            stop.set()
            await asyncio.wait_for(running, 10)
    assert len(await rows(pool, tenant)) == 1_000
    assert any(getattr(record, "action", "") == "group_recreated" for record in caplog.records)
