"""History for bench/kpi.py: a fleet's intervals written by the consumer's statement, the
unpartitioned table to compare inserts with, and the retention drops timed."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from consumer.ingest import insert_params
from gridlens.connections import postgres_pool
from gridlens.sqlfiles import query
from producer.batch import generate_batch
from producer.fleet import feeder_meters

WRITERS = 4
ROUNDS = 5  # insert-throughput rounds, each table in turn
ROUND_INTERVALS = 2  # intervals a table takes per round (50,000 rows at 25,000 meters)


@dataclass(frozen=True)
class Fleet:
    tenant_id: str
    meters: int
    feeders: int
    start: datetime  # the first interval ends 15 minutes after it

    def read_at(self, step: int) -> datetime:
        return self.start + timedelta(minutes=15 * (step + 1))

    def jobs(self, steps: range) -> list[tuple[int, int, Any]]:
        """(step, feeder, meter numbers) of every job of the steps: 500 meters at most."""
        meters = [
            feeder_meters(f, 1, self.meters, self.feeders) for f in range(1, self.feeders + 1)
        ]
        return [
            (step, feeder, meters[feeder - 1][first : first + 500])
            for step in steps
            for feeder in range(1, self.feeders + 1)
            for first in range(0, len(meters[feeder - 1]), 500)
        ]

    def params(self, step: int, feeder: int, numbers: Any) -> dict[str, Any]:
        batch = generate_batch(
            publish_id="kpi-bench",
            tenant_id=self.tenant_id,
            feeder=feeder,
            meter_numbers=numbers,
            read_at=self.read_at(step),
            interval_minutes=15,
        )
        return insert_params(batch)


async def grow(database_url: str, fleet: Fleet, steps: range) -> None:
    """Write the steps' intervals by the consumer's statement, WRITERS inserts at once."""
    jobs = fleet.jobs(steps)
    jobs.reverse()
    async with postgres_pool(database_url, max_size=WRITERS, autocommit=True) as pool:

        async def writer() -> None:
            while jobs:
                params = fleet.params(*jobs.pop())
                async with pool.connection() as conn:
                    await conn.execute(query("insert_reads"), params, prepare=True)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def free_disk(conn: psycopg.AsyncConnection[Any]) -> int:
    """Free bytes where the server keeps its data (this machine's, or the embedded one's)."""
    cursor = await conn.execute(b"SELECT current_setting('data_directory')")
    row = await cursor.fetchone()
    return shutil.disk_usage(row[0] if row else "/").free


async def insert_throughput(pool: AsyncConnectionPool[Any], fleet: Fleet, done: int) -> None:
    """New rows/s on one connection, the partitioned table against an unpartitioned copy
    of it (schema bench_plain, the same rows and key), each in turn for ROUNDS rounds."""
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        started = time.perf_counter()
        await conn.execute(
            b"CREATE SCHEMA bench_plain;"
            b" CREATE TABLE bench_plain.meter_reads_electric AS"
            b" SELECT * FROM public.meter_reads_electric;"
            b" ALTER TABLE bench_plain.meter_reads_electric"
            b" ADD PRIMARY KEY (tenant_id, read_at, meter_id)"
        )
        print(f"  unpartitioned copy made in {time.perf_counter() - started:.0f} s")
        plain = query("insert_reads").replace(
            b"public.meter_reads_electric", b"bench_plain.meter_reads_electric"
        )
        rates: dict[str, list[float]] = {"partitioned": [], "unpartitioned": []}
        step = done
        for _ in range(ROUNDS):
            for name, statement in (
                ("partitioned", query("insert_reads")),
                ("unpartitioned", plain),
            ):
                jobs = [
                    fleet.params(*job) for job in fleet.jobs(range(step, step + ROUND_INTERVALS))
                ]
                step += ROUND_INTERVALS
                started = time.perf_counter()
                for params in jobs:
                    await conn.execute(statement, params, prepare=True)
                rates[name].append(len(jobs) * 500 / (time.perf_counter() - started))
        await conn.execute(b"DROP SCHEMA bench_plain CASCADE")
    for name, samples in rates.items():
        print(
            f"  insert, one connection, {name:13s}: {statistics.median(samples):,.0f} new rows/s"
            f" (median of {ROUNDS} rounds of {ROUND_INTERVALS * fleet.meters:,} rows)"
        )


async def drop_days(pool: AsyncConnectionPool[Any], first: datetime, days: int) -> float:
    """Seconds to drop the days from ``first`` by retention's statement, a day at a time."""
    started = time.perf_counter()
    for day in range(days):
        async with pool.connection() as conn:
            await conn.execute(query("drop_read_day"), {"day": first + timedelta(days=day)})
    return time.perf_counter() - started
