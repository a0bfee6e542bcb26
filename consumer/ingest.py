"""One job, one statement: the batch's reads inserted idempotently."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from consumer.pgbinary import float8_array, meter_id_array, register
from gridlens.entry import ReadBatch
from gridlens.sqlfiles import query

register(psycopg.adapters)  # the binary array parameters below, for every connection


def meter_set(batch: ReadBatch) -> uuid.UUID:
    """The batch's meter set as tenant_meter_sets keys it (sql/migrations/0006)."""
    numbers = np.ascontiguousarray(batch.meter_numbers, dtype="<i8")
    return uuid.UUID(bytes=hashlib.sha256(numbers.tobytes()).digest()[:16])


async def insert_batch(pool: AsyncConnectionPool[Any], batch: ReadBatch) -> int:
    """Insert the batch (one statement, one transaction); return the rows that were new."""
    async with pool.connection() as conn:
        return await insert_reads(conn, batch)


async def insert_reads(conn: psycopg.AsyncConnection[Any], batch: ReadBatch) -> int:
    """The batch's one statement on ``conn``, in its current transaction; the new rows."""
    cursor = await conn.execute(
        query("insert_reads"),
        {
            "tenant_id": batch.tenant_id,
            "feeder_id": batch.feeder_id,
            "read_at": batch.read_at,
            "interval_minutes": batch.interval_minutes,
            "meter_ids": meter_id_array(batch.tenant_id, batch.meter_numbers),
            "kwh": float8_array(batch.kwh),
            "voltage": float8_array(batch.voltage),
            "meter_set": meter_set(batch),
        },
        prepare=True,  # planned once per connection, not on each of its first 5 uses
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
