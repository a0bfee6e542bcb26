"""Entry decoding and the consumer's insert statement, on one core and one connection.

Prints decoded reads/s (pure CPU) and new rows/s for 500-read jobs inserted by
the consumer's own statement (binary unnest, ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from bench.servers import bench_services
from consumer.ingest import insert_batch
from gridlens.connections import postgres_pool
from gridlens.entry import ReadBatch, decode, encode

METERS_PER_JOB = 500
JOBS = 200  # 100,000 reads


def batches(start: datetime) -> list[ReadBatch]:
    return [
        ReadBatch(
            publish_id="bench",
            tenant_id="BENCH",
            feeder_id=f"FEEDER_{job % 25 + 1}",
            read_at=start + timedelta(minutes=15 * (job // 25)),
            interval_minutes=15,
            meter_numbers=[job % 25 + 1 + 25 * n for n in range(METERS_PER_JOB)],
            kwh=[0.1 + n / 1_000 for n in range(METERS_PER_JOB)],
            voltage=[120.0 + n % 40 / 10 for n in range(METERS_PER_JOB)],
        )
        for job in range(JOBS)
    ]


def bench_decode(raw_entries: list[bytes]) -> None:
    started = time.perf_counter()
    for raw in raw_entries:
        decode(raw)
    elapsed = time.perf_counter() - started
    print(f"decode+validate: {len(raw_entries) * METERS_PER_JOB / elapsed:,.0f} reads/s")


async def bench_insert(database_url: str, jobs: list[ReadBatch]) -> None:
    pool = postgres_pool(database_url, min_size=1, max_size=1)
    await pool.open()
    try:
        started = time.perf_counter()
        inserted = sum([await insert_batch(pool, job) for job in jobs])
        elapsed = time.perf_counter() - started
        print(
            f"insert, new rows: {inserted / elapsed:,.0f} rows/s ({inserted:,} rows, 1 connection)"
        )
        started = time.perf_counter()
        again = sum([await insert_batch(pool, job) for job in jobs])
        elapsed = time.perf_counter() - started
        print(
            f"insert, duplicates: {len(jobs) * METERS_PER_JOB / elapsed:,.0f} reads/s skipped "
            f"({again} inserted)"
        )
    finally:
        await pool.close()


def main() -> None:
    jobs = batches(datetime(2026, 1, 1, tzinfo=UTC))
    bench_decode([encode(job) for job in jobs])
    with bench_services() as urls:
        asyncio.run(bench_insert(urls.database_url, jobs))


if __name__ == "__main__":
    main()
