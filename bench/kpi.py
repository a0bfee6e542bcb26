"""Status, quickcheck and the KPI refresh as history grows to 100 million rows, by day.

A tenant of 25,000 meters at 15 minutes per size, written into the partitioned table by
the consumer's own statement (rollups included) straight from the generator, not through
the queue, its history ending today: 1 million rows (today's first 40 intervals: a
fleet's first day), then 100 million (about six weeks) beside it. At each size the KPI
features are brought up to date (timed) and the database vacuumed and analyzed (as
autovacuum does after that), then one new interval is written and its refresh timed, and
the passes of a day's end: its hours 0-22 added up ahead, then the close (the last
hour recomputed, then the day added up and judged); status and quickcheck are called
through the real aiohttp application (p50, p95). At the last size: insert throughput on
one connection against an unpartitioned copy, and the time to drop a day and a week.
GRIDLENS_BENCH_KPI_ROWS sets the sizes (comma-separated; default 1000000,100000000).
Targets at 100 million rows: status p95 < 50 ms, quickcheck p95 < 150 ms; one interval's
refresh < 2 s at every size; partitioned inserts within 5% of unpartitioned; a day
dropped in < 1 s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.kpi_refresh import refresh_stale_days
from bench.history import Fleet, drop_days, free_disk, grow, insert_throughput
from bench.servers import bench_services
from gridlens.connections import postgres_pool
from gridlens.settings import Settings
from gridlens.sqlfiles import query

TENANT = "KPI_BENCH"
METERS, FEEDERS = 25_000, 25
BYTES_PER_READ = 200  # a little over the measured 192, indexes and rollups included
CALLS = 100


def sizes() -> list[int]:
    raw = os.environ.get("GRIDLENS_BENCH_KPI_ROWS", "1000000,100000000")
    return sorted(int(size) for size in raw.split(","))


async def disk_bytes(pool: AsyncConnectionPool[Any]) -> int:
    """The reads table, its indexes and the tables the consumer keeps beside it."""
    async with pool.connection() as conn:
        cursor = await conn.execute(query("disk_bytes"))
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def latencies(client: TestClient, path: str) -> tuple[float, float]:  # type: ignore[type-arg]
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        response = await client.get(path)
        await response.read()
        assert response.status == 200, await response.text()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


async def prepare(pool: AsyncConnectionPool[Any], fleet: Fleet, intervals: int) -> None:
    """Free disk first (for ``intervals`` of the fleet's size); then the partitions of the
    fleet's history (the longest), made ahead of it."""
    async with pool.connection() as conn:
        free = await free_disk(conn)
        needed = intervals * METERS * BYTES_PER_READ
        print(f"free disk where PostgreSQL keeps its data: {free / 1e9:,.1f} GB")
        print(f"needed for {intervals * METERS:,} rows: about {needed / 1e9:,.1f} GB")
        if needed > free:
            raise SystemExit("not enough free disk for this size (GRIDLENS_BENCH_KPI_ROWS)")
        await conn.execute(
            b"SELECT gridlens_ensure_read_partitions(%s, %s)",
            [fleet.start, fleet.read_at(intervals + 2 * 96)],
        )


async def refresh(database_url: str) -> tuple[int, float]:
    started = time.perf_counter()
    async with postgres_pool(database_url, max_size=1) as pool:
        days = await refresh_stale_days(pool)
    return len(days), time.perf_counter() - started


async def close_a_day(database_url: str, tenant_id: str) -> tuple[float, float] | None:
    """The passes of a day's end: hours 0-22 added up ahead (the pass after the interval
    ending at 23:00 does it), then the close: that hour recomputed, the day added up
    and judged. The tenant's latest day that is over plays it, its last hour, its features
    and its verdict forgotten; returns the seconds of both (None: no day is over yet)."""
    async with postgres_pool(database_url, max_size=1) as pool, pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT max(day) FROM kpi_refreshed_days WHERE tenant_id = %s AND judged",
            [tenant_id],
        )
        day = (await cursor.fetchone() or [None])[0]
        if day is None:
            return None
        params = {"tenant_id": tenant_id, "day": day}
        await conn.execute(
            b"DELETE FROM kpi_meter_day_ahead WHERE tenant_id = %(tenant_id)s AND day = %(day)s",
            params,
        )
        await conn.commit()
        started = time.perf_counter()
        await conn.execute(query("refresh_budget"), {"milliseconds": "600000"})
        await conn.execute(query("add_up_day_ahead"), params)
        await conn.commit()
        ahead = time.perf_counter() - started
        await conn.execute(
            b"WITH hours AS (DELETE FROM kpi_refreshed_hours WHERE tenant_id = %(tenant_id)s"
            b"  AND day = %(day)s AND hour = 23),"
            b" features AS (DELETE FROM kpi_meter_day_features WHERE tenant_id = %(tenant_id)s"
            b"  AND day = %(day)s)"
            b" UPDATE kpi_refreshed_days SET judged = false"
            b" WHERE tenant_id = %(tenant_id)s AND day = %(day)s",
            params,
        )
    return ahead, (await refresh(database_url))[1]


async def settle(database_url: str) -> float:
    """Vacuum and analyze the database: what autovacuum does in the minutes after a bulk
    write (statistics of the new rows, the visibility map, the hour partitions dropped)."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(b"VACUUM (ANALYZE)")
    return time.perf_counter() - started


def fleet_of(rows: int) -> Fleet:
    """A tenant of ``rows`` reads whose last interval (and the one added) is today's."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = (rows // METERS) // 96
    return Fleet(f"{TENANT}_{rows}", METERS, FEEDERS, today - timedelta(days=days))


async def one_size(database_url: str, fleet: Fleet, rows: int) -> int:
    """Write a history of ``rows``, then time what the API does with it; the steps done."""
    intervals = rows // METERS
    started = time.perf_counter()
    await grow(database_url, fleet, range(intervals))
    elapsed = time.perf_counter() - started
    print(f"{intervals * METERS:,} rows ({intervals * METERS / elapsed:,.0f} rows/s)")
    days, seconds = await refresh(database_url)
    print(f"  kpi features brought up to date: {days} day(s) in {seconds:.1f} s")
    settled = await settle(database_url)
    print(f"  settled (VACUUM ANALYZE, as autovacuum does after a backfill): {settled:.0f} s")
    await grow(database_url, fleet, range(intervals, intervals + 1))
    days, seconds = await refresh(database_url)
    into_day = (intervals + 1) % 96 or 96
    print(
        f"  one new interval ({into_day} of its day, {into_day * METERS:,} reads that day):"
        f" refresh {seconds:.2f} s ({days} day)"
    )
    closing = await close_a_day(database_url, fleet.tenant_id)
    if closing is not None:
        ahead, close = closing
        print(
            "  hours 0-22 added up ahead (by the pass after the interval ending at 23:00):"
            f" {ahead:.2f} s"
        )
        print(f"  the pass that closes a day (its last hour, then the day judged): {close:.2f} s")
    async with postgres_pool(database_url, max_size=1) as pool:
        on_disk = await disk_bytes(pool)
    stored = (intervals + 1) * METERS
    print(f"  on disk: {on_disk / 2**30:,.2f} GiB, {on_disk / stored:.0f} bytes a read")
    return intervals + 1


async def endpoints(settings: Settings, tenant_id: str) -> None:
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        for name, path in (
            ("status", "/api/ami/scale/status"),
            ("quickcheck", "/api/ami/kpi/quickcheck"),
        ):
            p50, p95 = await latencies(client, f"{path}?tenantId={tenant_id}")
            print(f"  {name:10s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


async def measure(database_url: str, redis_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        api_key="kpi-bench-key-0123456789",
        redis_namespace="gridlens-kpi-bench",
    )
    settings = settings.resolved(database_url, redis_url, settings.api_key)
    fleets = {rows: fleet_of(rows) for rows in sizes()}
    largest = max(fleets)
    async with postgres_pool(database_url, max_size=1) as pool:
        await prepare(pool, fleets[largest], sum(fleets) // METERS)
    for rows, fleet in fleets.items():
        done = await one_size(database_url, fleet, rows)
        await endpoints(settings, fleet.tenant_id)
    fleet = fleets[largest]
    async with postgres_pool(database_url, max_size=1) as pool:
        await insert_throughput(pool, fleet, done + 1)
        first_day = fleet.start
        print(f"  drop a day: {await drop_days(pool, first_day, 1):.2f} s")
        week = await drop_days(pool, first_day + timedelta(days=1), 7)
        print(f"  drop a week (7 days, a day at a time): {week:.2f} s")


def main() -> None:
    with bench_services() as urls:
        asyncio.run(measure(urls.database_url, urls.redis_url))


if __name__ == "__main__":
    main()
