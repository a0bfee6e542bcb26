"""Partitions of a day or of a week: the measurement the reads table's span was chosen by.

Two databases hold the same six weeks of a 2,500-meter fleet at 15 minutes (10 million
rows, written by the consumer's statement): one partitioned by day (the migrations'),
one by week (its partitions replaced before any row is written). For each: new rows/s
on one connection, the KPI refresh of one day, status and quickcheck statements
(planning included, p50 of 20), what a day of retention leaves behind (a week's
partition can only go whole), and the time to drop the oldest partition.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from api.kpi_refresh import refresh_stale_days
from app.migrate import migrate
from bench.history import Fleet, grow
from bench.servers import bench_services
from gridlens.connections import postgres_pool
from gridlens.sqlfiles import query

TENANT = "SPAN_BENCH"
METERS, FEEDERS, DAYS = 2_500, 25, 42
INTERVALS = DAYS * 96
CALLS = 20


async def by_week(conn: psycopg.AsyncConnection[Any], first: datetime) -> None:
    """Replace the (empty) day partitions with weeks from ``first``, same bounds rule."""
    cursor = await conn.execute(
        b"SELECT child.relname FROM pg_inherits JOIN pg_class AS child ON child.oid = inhrelid"
        b" WHERE inhparent = 'meter_reads_electric'::regclass AND child.relname ~ '_p[0-9]{8}$'"
    )
    for (name,) in await cursor.fetchall():
        await conn.execute(f"DROP TABLE public.{name}".encode())
    for week in range(DAYS // 7 + 2):
        low = first + timedelta(days=7 * week, microseconds=1)
        await conn.execute(
            f"CREATE TABLE public.meter_reads_electric_w{week:02d} PARTITION OF"
            f" public.meter_reads_electric FOR VALUES FROM ('{low.isoformat()}')"
            f" TO ('{(low + timedelta(days=7)).isoformat()}')".encode()
        )


async def timed(call: Callable[[], Awaitable[object]], times: int = 1) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def one_span(database_url: str, span: str, fleet: Fleet) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        if span == "week":
            await by_week(conn, fleet.start)
        else:
            await conn.execute(
                b"SELECT gridlens_ensure_read_partitions(%s, %s)",
                [fleet.start, fleet.read_at(INTERVALS + 96)],
            )
    await grow(database_url, fleet, range(INTERVALS))
    async with postgres_pool(database_url, max_size=1) as pool:
        await refresh_stale_days(pool)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(b"ANALYZE")
        jobs = [fleet.params(*job) for job in fleet.jobs(range(INTERVALS, INTERVALS + 20))]

        async def insert() -> None:
            for params in jobs:
                await conn.execute(query("insert_reads"), params)

        rate = len(jobs) * 500 / await timed(insert)
        tenant = {"tenant_id": TENANT}
        latest = {**tenant, "read_at": fleet.read_at(INTERVALS + 19)}
        status = await timed(lambda: conn.execute(query("tenant_status"), tenant), CALLS)
        load = await timed(lambda: conn.execute(query("quickcheck_feeder_load"), latest), CALLS)
    started = time.perf_counter()
    async with postgres_pool(database_url, max_size=1) as pool:
        await refresh_stale_days(pool)
    refresh = time.perf_counter() - started
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        oldest = (
            "meter_reads_electric_w00"
            if span == "week"
            else f"meter_reads_electric_p{fleet.start:%Y%m%d}"
        )
        drop = await timed(lambda: conn.execute(f"DROP TABLE public.{oldest}".encode()))
    kept = "up to 6 days more than the window" if span == "week" else "the window, to the day"
    print(
        f"{span:4s}: insert {rate:,.0f} new rows/s; refresh of the new day {refresh:.2f} s;"
        f" status {status * 1000:.1f} ms; feeder load {load * 1000:.1f} ms;"
        f" drop the oldest {drop:.2f} s; retention keeps {kept}"
    )


async def measure(database_url: str) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=DAYS + 1)
    first -= timedelta(days=first.weekday())  # weeks from a Monday
    parts = urlsplit(database_url)
    for span in ("day", "week"):
        name = f"{parts.path.lstrip('/')}_{span}"
        url = urlunsplit(parts._replace(path=f"/{name}"))
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(f"CREATE DATABASE {name}".encode())
        try:
            await migrate(url)
            await one_span(url, span, Fleet(TENANT, METERS, FEEDERS, first))
        finally:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


def main() -> None:
    with bench_services() as urls:
        asyncio.run(measure(urls.database_url))


if __name__ == "__main__":
    main()
