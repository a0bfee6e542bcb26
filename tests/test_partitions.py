"""Reads partitioned by day (sql/migrations/0013): the conversion of a populated table,
partitions ahead of the data and on demand, ingestion across a day, and retention."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from api.kpi_refresh import refresh_stale_days
from app.migrate import migrate
from consumer.ingest import insert_batch, insert_params, partition_race
from consumer.worker import Consumer
from gridlens.connections import postgres_pool
from gridlens.entry import ENTRY_FIELD, ReadBatch, encode
from gridlens.keys import Keys
from gridlens.partitions import (
    PartitionDays,
    ensure_partition,
    ensure_partitions,
    expired_days,
    prune,
    read_day,
)
from gridlens.settings import Settings
from gridlens.sqlfiles import migrations, query

# The consumer's statement of the release before 0013, which wrote the tables converted.
STATEMENT_BEFORE = (Path(__file__).parent / "data" / "insert_reads_0012.sql").read_bytes()
FEEDERS = 2


async def nothing(*_: object) -> None:
    pass


def batch(tenant: str, feeder: int, read_at: datetime, meters: range = range(20)) -> ReadBatch:
    numbers = [feeder + FEEDERS * n for n in meters]
    return ReadBatch(
        publish_id="partitions",
        tenant_id=tenant,
        feeder_id=f"FEEDER_{feeder}",
        read_at=read_at,
        interval_minutes=15,
        meter_numbers=numbers,
        kwh=[0.2 + number / 1_000 for number in numbers],
        voltage=[120.0 + number % 5 for number in numbers],
        kwh_received=[0.0] * len(numbers),
    )


async def insert_without_partition(pool: AsyncConnectionPool[Any], entry: ReadBatch) -> int:
    """The consumer's statement alone, its day's partition not made first."""
    async with pool.connection() as conn:
        cursor = await conn.execute(query("insert_reads"), insert_params(entry))
        return int((await cursor.fetchone() or (0,))[0])


def day_start(days_from_today: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_from_today)


async def migrated_before_0013(database_url: str, directory: Path) -> None:
    for migration in migrations():
        if migration.version < "0013":
            (directory / migration.name).write_bytes(migration.statements)
    await migrate(database_url, directory)


async def fingerprint(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...]:
    cursor = await conn.execute(
        b"SELECT count(*), md5(string_agg(concat_ws(',', tenant_id, meter_id, feeder_id,"
        b" read_at, interval_minutes, kwh, voltage, kwh_received, late, ingested_at), ';'"
        b" ORDER BY tenant_id, meter_id, read_at)) FROM meter_reads_electric"
    )
    return tuple(await cursor.fetchone() or ())


async def status_matches_the_table(conn: psycopg.AsyncConnection[Any], tenant: str) -> tuple:  # type: ignore[type-arg]
    """The status rollups agree with the table (meters, reads, latest, energy, late)."""
    rolled = await (await conn.execute(query("tenant_status"), {"tenant_id": tenant})).fetchone()
    scanned = await (
        await conn.execute(query("tenant_status_scan"), {"tenant_id": tenant})
    ).fetchone()
    assert rolled is not None and scanned is not None
    assert rolled[:6] == scanned, (rolled, scanned)
    return tuple(scanned[:3])


async def misplaced_rows(conn: psycopg.AsyncConnection[Any]) -> int:
    """Rows not in the partition named for their day (the default partition included)."""
    cursor = await conn.execute(
        b"SELECT count(*) FROM meter_reads_electric WHERE tableoid::regclass::text"
        b" <> gridlens_read_partition(gridlens_read_day(read_at))"
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else -1


async def test_a_populated_table_converts_without_losing_or_doubling_a_row(
    fresh_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await migrated_before_0013(fresh_database_url, tmp_path)
    first = datetime(2026, 11, 28, tzinfo=UTC)
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        for step in range(1, 3 * 12 + 2):  # every 2 hours over three days, and a midnight more
            for tenant in ("CONVERTED_A", "CONVERTED_B"):
                for feeder in range(1, FEEDERS + 1):
                    params = insert_params(batch(tenant, feeder, first + timedelta(hours=2 * step)))
                    await conn.execute(STATEMENT_BEFORE, params)
        await conn.commit()
        before = await fingerprint(conn)
        statuses = [await status_matches_the_table(conn, t) for t in ("CONVERTED_A", "CONVERTED_B")]
    assert before[0] == 37 * 2 * 2 * 20

    with caplog.at_level(logging.INFO, logger="app.migrate"):
        assert await migrate(fresh_database_url) == ["0013", "0014", "0015", "0016"]
    (applied,) = [r for r in caplog.records if "0013" in getattr(r, "migration", "")]
    assert isinstance(getattr(applied, "seconds", None), float)

    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        assert await fingerprint(conn) == before
        assert await misplaced_rows(conn) == 0
        for tenant, status in zip(("CONVERTED_A", "CONVERTED_B"), statuses, strict=True):
            assert await status_matches_the_table(conn, tenant) == status
        cursor = await conn.execute(  # a midnight read is the day before's last interval
            b"SELECT tableoid::regclass::text FROM meter_reads_electric"
            b" WHERE read_at = '2026-11-29T00:00Z' LIMIT 1"
        )
        assert await cursor.fetchone() == ("meter_reads_electric_p20261128",)
        cursor = await conn.execute(  # the views were recreated over the new table
            b"SELECT sum(meters_reporting) FROM kpi_feeder_load WHERE tenant_id = 'CONVERTED_A'"
        )
        assert await cursor.fetchone() == (before[0] // 2,)


async def test_consumers_retry_through_the_conversion_and_dead_letter_nothing(
    fresh_database_url: str,
    settings: Settings,
    redis: aioredis.Redis,
    tmp_path: Path,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer of the release before keeps running while the table is converted: its
    inserts wait for the migration's lock, time out and retry, and land once it is done."""
    await migrated_before_0013(fresh_database_url, tmp_path)
    monkeypatch.setattr(
        "consumer.ingest.query",
        lambda name: STATEMENT_BEFORE if name == "insert_reads" else query(name),
    )
    monkeypatch.setattr(PartitionDays, "ensure", nothing)  # no partitions to make before 0013
    settings = dataclasses.replace(settings, database_url=fresh_database_url)
    keys = Keys(settings.redis_namespace)
    # The consumer's pool as `gridlens consume` opens it, with a short insert timeout.
    pool = postgres_pool(fresh_database_url, max_size=8, statement_timeout_s=0.5, autocommit=True)
    await pool.open()
    stop = asyncio.Event()
    running = asyncio.create_task(Consumer(settings, redis, pool).run(stop))
    read_at = day_start(0) + timedelta(hours=1)
    try:
        await redis.xadd(keys.stream, {ENTRY_FIELD: encode(batch(tenant, 1, read_at))})
        async with await psycopg.AsyncConnection.connect(fresh_database_url) as holder:
            for _ in range(200):  # the consumer has written the first job
                cursor = await holder.execute(b"SELECT count(*) FROM meter_reads_electric")
                if (await cursor.fetchone() or (0,))[0] == 20:
                    break
                await asyncio.sleep(0.05)
            # A reader in the middle of a transaction keeps the migration waiting.
            converting = asyncio.create_task(migrate(fresh_database_url))
            await asyncio.sleep(0.5)
            for step in range(1, 6):
                entry = batch(tenant, 2, read_at + timedelta(minutes=15 * step))
                await redis.xadd(keys.stream, {ENTRY_FIELD: encode(entry)})
            await asyncio.sleep(3)
            assert not converting.done()
        assert await asyncio.wait_for(converting, 30) == ["0013", "0014", "0015", "0016"]
        async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
            for _ in range(400):
                count = (
                    await (
                        await conn.execute(b"SELECT count(*) FROM meter_reads_electric")
                    ).fetchone()
                    or (0,)
                )[0]
                if count == 6 * 20:
                    break
                await asyncio.sleep(0.05)
            assert count == 6 * 20
            assert await misplaced_rows(conn) == 0
            await status_matches_the_table(conn, tenant)
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        await pool.close()
    assert await redis.xlen(keys.dead_letters) == 0
    assert REGISTRY.get_sample_value("gridlens_consumer_insert_retries_total")


async def test_partitions_are_made_ahead_and_a_read_without_one_waits_in_the_default(
    fresh_database_url: str,
) -> None:
    await migrate(fresh_database_url)
    async with postgres_pool(fresh_database_url, max_size=2) as pool:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                b"SELECT relname FROM pg_class WHERE relname ~ '^meter_reads_electric_p[0-9]{8}$'"
            )
            made = {row[0] for row in await cursor.fetchall()}
        ahead = {f"meter_reads_electric_p{day_start(n):%Y%m%d}" for n in range(-1, 8)}
        assert ahead <= made
        assert await ensure_partitions(pool) == 0  # nothing missing

        far = day_start(40) + timedelta(hours=6)  # no partition yet: the default takes it
        assert await insert_without_partition(pool, batch("AHEAD", 1, far)) == 20
        async with pool.connection() as conn:
            before = await fingerprint(conn)
            status = await status_matches_the_table(conn, "AHEAD")
            assert await misplaced_rows(conn) == 20
        assert await ensure_partitions(pool) == 1  # the pass makes its partition and moves it
        async with pool.connection() as conn:
            assert await misplaced_rows(conn) == 0
            assert await fingerprint(conn) == before
            assert await status_matches_the_table(conn, "AHEAD") == status
        assert await insert_batch(pool, batch("AHEAD", 1, far)) == 0  # still a duplicate


async def test_a_run_across_midnight_makes_and_fills_two_days_partitions(
    settings: Settings,
    redis: aioredis.Redis,
    tenant: str,
    consumer: None,
    pool: AsyncConnectionPool[Any],
) -> None:
    """Reads of two days in one run, days with no partition yet: the consumer makes each
    day's partition before its first insert, and the rows land in them, not the default."""
    keys = Keys(settings.redis_namespace)
    midnight = day_start(-20) + timedelta(days=random.randrange(-300, 0))  # no partition yet
    for minutes in (-15, 0, 15, 30):  # 23:45 and 00:00 of the day before, 00:15 and 00:30
        for feeder in range(1, FEEDERS + 1):
            entry = batch(tenant, feeder, midnight + timedelta(minutes=minutes))
            await redis.xadd(keys.stream, {ENTRY_FIELD: encode(entry)})
    async with pool.connection() as conn:
        for _ in range(400):
            cursor = await conn.execute(query("tenant_status"), {"tenant_id": tenant})
            if (await cursor.fetchone() or (0, 0))[1] == 4 * FEEDERS * 20:
                break
            await asyncio.sleep(0.05)
        assert await status_matches_the_table(conn, tenant) == (
            FEEDERS * 20,
            4 * FEEDERS * 20,
            midnight + timedelta(minutes=30),
        )
        cursor = await conn.execute(
            b"SELECT tableoid::regclass::text, count(*) FROM meter_reads_electric"
            b" WHERE tenant_id = %s GROUP BY 1 ORDER BY 1",
            [tenant],
        )
        assert await cursor.fetchall() == [
            (f"meter_reads_electric_p{midnight - timedelta(days=1):%Y%m%d}", 2 * FEEDERS * 20),
            (f"meter_reads_electric_p{midnight:%Y%m%d}", 2 * FEEDERS * 20),
        ]
    assert await redis.xlen(keys.dead_letters) == 0


async def test_retention_drops_whole_days_and_status_stays_exact(
    fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(fresh_database_url)
    oldest = day_start(-6)
    async with postgres_pool(fresh_database_url, max_size=2) as pool:
        for hour in range(0, 5 * 24, 6):  # five days, every six hours
            read_at = oldest + timedelta(hours=hour + 6)
            for tenant in ("KEPT_A", "KEPT_B"):
                await insert_batch(pool, batch(tenant, 1, read_at))
                # Meters 20..29 of feeder 2 report only on the oldest day.
                meters = range(20, 30) if hour < 24 else range(10)
                await insert_batch(pool, batch(tenant, 2, read_at, meters))
        assert await ensure_partitions(pool) == 0  # each insert made its day's partition
        await refresh_stale_days(pool)
        async with pool.connection() as conn:
            before = await fingerprint(conn)
            assert (await status_matches_the_table(conn, "KEPT_A"))[0] == 40

        shown = await expired_days(pool, keep_days=4)  # what the dry run shows
        assert [d.day for d in shown] == [oldest, oldest + timedelta(days=1)]
        assert [d.partition for d in shown] == [
            f"meter_reads_electric_p{d.day:%Y%m%d}" for d in shown
        ]
        assert [d.reads for d in shown] == [2 * (20 + 10) * 4, 2 * (20 + 10) * 4]
        async with pool.connection() as conn:
            assert await fingerprint(conn) == before  # showing changed nothing

        dropped_before = (
            REGISTRY.get_sample_value("gridlens_retention_partitions_dropped_total") or 0
        )
        with caplog.at_level(logging.INFO, logger="gridlens.partitions"):
            assert await prune(pool, keep_days=4) == shown
        logged = [r for r in caplog.records if getattr(r, "action", "") == "retention_drop"]
        assert [getattr(r, "reads", None) for r in logged] == [d.reads for d in shown]
        dropped_now = REGISTRY.get_sample_value("gridlens_retention_partitions_dropped_total")
        assert dropped_now == dropped_before + 2
        async with pool.connection() as conn:
            for tenant in ("KEPT_A", "KEPT_B"):
                meters, reads, latest = await status_matches_the_table(conn, tenant)
                assert (meters, reads) == (30, (20 + 10) * 12)  # the oldest day's 10 are gone
                assert latest == oldest + timedelta(days=5)
            cursor = await conn.execute(
                b"SELECT (SELECT count(*) FROM kpi_meter_day_features WHERE day < %(kept)s),"
                b" (SELECT count(*) FROM kpi_refreshed_days WHERE day < %(kept)s),"
                b" (SELECT count(*) FROM kpi_meter_day_features WHERE day >= %(kept)s),"
                b" to_regclass(%(gone)s)",
                {"kept": oldest + timedelta(days=2), "gone": shown[0].partition},
            )
            assert await cursor.fetchone() == (0, 0, 2 * 30 * 3, None)
        assert await prune(pool, keep_days=4) == []  # nothing more to drop

        # A late read of a dropped day brings its partition back, and goes next time.
        assert await insert_batch(pool, batch("KEPT_A", 1, oldest + timedelta(hours=3))) == 20
        async with pool.connection() as conn:
            assert (await status_matches_the_table(conn, "KEPT_A"))[1] == 30 * 12 + 20
        assert [d.reads for d in await prune(pool, keep_days=4)] == [20]
        async with pool.connection() as conn:
            assert (await status_matches_the_table(conn, "KEPT_A"))[1] == 30 * 12


def test_prune_dry_run_lists_the_days_and_drops_nothing(fresh_database_url: str) -> None:
    asyncio.run(migrate(fresh_database_url))

    async def one_old_day() -> None:
        async with postgres_pool(fresh_database_url, max_size=1) as pool:
            await insert_batch(pool, batch("DRY", 1, day_start(-10) + timedelta(hours=1)))

    asyncio.run(one_old_day())
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "REDIS_URL": "redis://127.0.0.1:1/0"}
    env.pop("GRIDLENS_RETENTION_DAYS", None)
    command = [sys.executable, "-m", "app", "prune", "--dry-run", "--days", "7"]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    day = f"{day_start(-10):%Y-%m-%d}"
    assert f"would drop {day}" in shown.stdout and "20 reads" in shown.stdout
    assert "would drop 1 day(s), 20 reads: keeping the last 7 day(s)" in shown.stdout
    unset = subprocess.run(command[:4], env=env, capture_output=True, text=True, timeout=60)
    assert unset.returncode == 2 and "GRIDLENS_RETENTION_DAYS" in unset.stderr

    async def still_there() -> int:
        async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
            cursor = await conn.execute(b"SELECT count(*) FROM meter_reads_electric")
            return int((await cursor.fetchone() or (0,))[0])

    assert asyncio.run(still_there()) == 20


async def test_an_insert_that_meets_a_partition_being_attached_is_retried_into_it(
    fresh_database_url: str,
) -> None:
    """An insert routed to the default partition while its day's partition is attached
    fails on the default's new constraint; that error is the race, and a retry lands."""
    await migrate(fresh_database_url)
    read_at = day_start(-30) + timedelta(hours=2)
    async with (
        postgres_pool(fresh_database_url, max_size=2, autocommit=True) as pool,
        await psycopg.AsyncConnection.connect(fresh_database_url) as maker,
    ):
        await ensure_partition(maker, read_day(read_at))  # holds the default's lock
        inserting = asyncio.create_task(insert_without_partition(pool, batch("RACE", 1, read_at)))
        await asyncio.sleep(0.5)
        await maker.commit()
        with pytest.raises(psycopg.errors.CheckViolation) as raised:
            await inserting
        assert partition_race(raised.value)
        assert await insert_without_partition(pool, batch("RACE", 1, read_at)) == 20
        async with pool.connection() as conn:
            assert await misplaced_rows(conn) == 0
            await status_matches_the_table(conn, "RACE")
