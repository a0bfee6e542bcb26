"""One job, one statement: the batch's reads inserted idempotently."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from consumer.pgbinary import float8_array, meter_id_array, register
from gridlens.entry import ReadBatch
from gridlens.sqlfiles import query

register(psycopg.adapters)  # the binary array parameters below, for every connection


def meter_set(batch: ReadBatch) -> uuid.UUID:
    """The batch's meter set as tenant_meter_sets keys it (sql/migrations/0006)."""
    numbers = np.ascontiguousarray(batch.meter_numbers, dtype="<i8")
    return uuid.UUID(bytes=hashlib.sha256(numbers.tobytes()).digest()[:16])


class HeldConnections:
    """Connections a consumer keeps between its jobs, instead of a pool checkout per job.

    A checkout and return through psycopg_pool cost about 0.03 s of client CPU per
    100,000 reads (bench: 0.12 → 0.09 s for the insert alone). Up to ``keep``
    connections stay held; one that raised, is not idle, or has served ``uses``
    jobs goes back to the pool, which discards a broken one and renews an old one.
    """

    uses = 200  # jobs per hold: the pool still sees each connection every ~100,000 reads

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._idle: list[tuple[psycopg.AsyncConnection[Any], int]] = []

    @contextlib.asynccontextmanager
    async def connection(self, keep: int) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn, used = self._idle.pop() if self._idle else (await self.pool.getconn(), 0)
        try:
            yield conn
            if conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
                await conn.commit()  # as the pool's own context commits, without autocommit
        except BaseException:
            await self.pool.putconn(conn)  # rolled back; a broken one is replaced
            raise
        idle = conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        if idle and used + 1 < self.uses and len(self._idle) < keep:
            self._idle.append((conn, used + 1))
        else:
            await self.pool.putconn(conn)

    async def release(self) -> None:
        """Give every held connection back to the pool."""
        while self._idle:
            await self.pool.putconn(self._idle.pop()[0])


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
