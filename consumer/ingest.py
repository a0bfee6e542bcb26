"""One job, one statement: the batch's reads inserted idempotently."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from consumer.pgbinary import float8_array, meter_id_array, register
from gridlens.entry import ReadBatch
from gridlens.sqlfiles import query

register(psycopg.adapters)  # the binary array parameters below, for every connection

REGISTERED_SETS_KEPT: Final = 4_096  # meter sets known to be in tenant_meters


class _RegisteredMeters:
    """Meter sets this process has registered in tenant_meters already.

    A fleet's jobs carry the same meters every interval: after the first time, the
    insert need not try to register them again (a miss only costs that attempt).
    """

    def __init__(self) -> None:
        self._sets: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    @staticmethod
    def key(batch: ReadBatch) -> tuple[str, bytes]:
        numbers = np.ascontiguousarray(batch.meter_numbers, dtype=np.int64)
        return batch.tenant_id, numbers.tobytes()

    def __contains__(self, key: tuple[str, bytes]) -> bool:
        return key in self._sets

    def add(self, key: tuple[str, bytes]) -> None:
        self._sets[key] = None
        self._sets.move_to_end(key)
        if len(self._sets) > REGISTERED_SETS_KEPT:
            self._sets.popitem(last=False)


_registered = _RegisteredMeters()


async def insert_batch(pool: AsyncConnectionPool[Any], batch: ReadBatch) -> int:
    """Insert the batch (one statement, one transaction); return the rows that were new."""
    key = _registered.key(batch)
    async with pool.connection() as conn:
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
                "register_meters": key not in _registered,
            },
            prepare=True,  # planned once per connection, not on each of its first 5 uses
        )
        row = await cursor.fetchone()
    _registered.add(key)
    return int(row[0]) if row else 0
