"""Status and quickcheck latency as the table grows: 1 and 10 million rows for one tenant.

Rows are written the way the consumer writes them (its insert statement, rollups
included) but straight from the generator, not through the queue; the KPI features
of the changed days are refreshed (as the API does in the background, timed here).
Then the two endpoints are called repeatedly through the real aiohttp application;
prints p50 and p95. Targets at 10 million rows: status p95 < 100 ms, quickcheck p95
< 300 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.kpi_refresh import refresh_stale_days
from bench.servers import bench_services
from consumer.ingest import insert_batch
from gridlens.connections import postgres_pool
from gridlens.settings import Settings
from gridlens.sqlfiles import query
from producer.batch import generate_batch
from producer.fleet import feeder_meters

TENANT = "KPI_BENCH"
METERS, FEEDERS = 25_000, 25
SIZES = (1_000_000, 10_000_000)
CALLS = 30
START = datetime(2026, 1, 1, tzinfo=UTC)
WRITERS = 4


async def grow(database_url: str, intervals_done: int, intervals: int) -> None:
    """Write intervals [intervals_done, intervals) of the fleet, WRITERS inserts at once."""
    pool = postgres_pool(database_url, max_size=WRITERS, autocommit=True)
    await pool.open()
    meters = [feeder_meters(feeder, 1, METERS, FEEDERS) for feeder in range(1, FEEDERS + 1)]
    jobs: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    for step in range(intervals_done, intervals):
        for feeder in range(1, FEEDERS + 1):
            for start in range(0, len(meters[feeder - 1]), 500):
                jobs.put_nowait((step, feeder, start))

    async def writer() -> None:
        while not jobs.empty():
            step, feeder, start = jobs.get_nowait()
            batch = generate_batch(
                publish_id="kpi-bench",
                tenant_id=TENANT,
                feeder=feeder,
                meter_numbers=meters[feeder - 1][start : start + 500],
                read_at=START + timedelta(minutes=15 * (step + 1)),
                interval_minutes=15,
            )
            await insert_batch(pool, batch)

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    await pool.close()


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


async def measure(database_url: str, redis_url: str) -> None:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        api_key="kpi-bench-key-0123456789",
        redis_namespace="gridlens-kpi-bench",
    )
    done = 0
    for rows in SIZES:
        intervals = rows // METERS
        started = time.perf_counter()
        await grow(database_url, done, intervals)
        print(
            f"{rows:,} rows ({intervals - done} intervals written in "
            f"{time.perf_counter() - started:.0f} s)"
        )
        done = intervals
        started = time.perf_counter()
        async with postgres_pool(database_url, max_size=1) as pool:
            days = await refresh_stale_days(pool)
            on_disk = await disk_bytes(pool)
        print(
            f"  kpi features refreshed for {len(days)} day(s) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        per_day = on_disk / rows * METERS * 24 * 60 // 15
        print(
            f"  on disk: {on_disk / 2**20:,.0f} MiB ({on_disk / rows:.0f} bytes a read, indexes"
            f" and rollups included): {per_day / 2**30:.2f} GiB a day for {METERS:,} meters"
            " at 15 minutes"
        )
        app = create_app(settings.resolved(database_url, redis_url, settings.api_key or "-"))
        async with TestClient(TestServer(app)) as client:
            for name, path in (
                ("status", "/api/ami/scale/status"),
                ("quickcheck", "/api/ami/kpi/quickcheck"),
            ):
                p50, p95 = await latencies(client, f"{path}?tenantId={TENANT}")
                print(f"  {name:10s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


def main() -> None:
    with bench_services() as urls:
        asyncio.run(measure(urls.database_url, urls.redis_url))


if __name__ == "__main__":
    main()
