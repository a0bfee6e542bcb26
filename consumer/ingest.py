"""One job, one statement: the batch's reads inserted idempotently."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from gridlens.entry import ReadBatch
from gridlens.sqlfiles import query


async def insert_batch(pool: AsyncConnectionPool[Any], batch: ReadBatch) -> int:
    """Insert the batch in one transaction; return the rows that were new."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("insert_reads"),
            {
                "tenant_id": batch.tenant_id,
                "feeder_id": batch.feeder_id,
                "read_at": batch.read_at,
                "interval_minutes": batch.interval_minutes,
                "meter_ids": batch.meter_ids(),
                "kwh": batch.kwh,
                "voltage": batch.voltage,
            },
            binary=True,
        )
        return int(cursor.rowcount)
