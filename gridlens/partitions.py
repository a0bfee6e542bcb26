"""Reads partitioned by day: partitions ahead of the data, and retention (sql/migrations/0013).

A partition holds one UTC day of intervals, the reads ending in (day, day + 1 day]. The
API's background pass (api/partitions.py) keeps DAYS_AHEAD days of partitions ready and,
with a retention window set, drops the days wholly older than it; ``gridlens prune``
does the same on demand, or only shows what would go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from gridlens.metrics import Counter
from gridlens.sqlfiles import query

log = logging.getLogger(__name__)

DAYS_AHEAD: Final = 7
DEFAULT_PARTITION: Final = "meter_reads_electric_default"

DAYS_DROPPED = Counter(
    "gridlens_retention_partitions_dropped_total",
    "Day partitions of reads dropped by the retention window.",
)
READS_DROPPED = Counter(
    "gridlens_retention_reads_dropped_total", "Reads dropped with their days by retention."
)


@dataclass(frozen=True)
class ExpiredDay:
    """A day whose reads all lie outside the retention window."""

    day: datetime  # its start, UTC
    partition: str | None  # None: no partition of its own (reads in the default one)
    reads: int


def read_day(read_at: datetime) -> datetime:
    """The start (UTC) of the day a read belongs to: its interval's, (day, day + 1 day]."""
    return (
        (read_at - timedelta(microseconds=1))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )


async def ensure_partition(conn: psycopg.AsyncConnection[Any], day: datetime) -> bool:
    """Make the day's partition if it is missing (in the connection's transaction, or one
    of its own in autocommit); True when made."""
    cursor = await conn.execute(query("ensure_read_partition"), {"day": day})
    row = await cursor.fetchone()
    made = bool(row and row[0])
    if made:
        log.info(
            "read partition created",
            extra={"action": "partition_created", "day": day.date().isoformat()},
        )
    return made


async def ensure_partitions(pool: AsyncConnectionPool[Any], days_ahead: int = DAYS_AHEAD) -> int:
    """Make the partitions of yesterday to today + days_ahead and of every day the default
    partition holds reads of (moving them), a day per transaction; return how many."""
    async with pool.connection() as conn:
        cursor = await conn.execute(query("missing_read_partitions"), {"days_ahead": days_ahead})
        days = [day for (day,) in await cursor.fetchall()]
        await conn.commit()
        made = 0
        for day in days:
            async with conn.transaction():
                made += await ensure_partition(conn, day)
    return made


class PartitionDays:
    """The days whose partition one process knows to exist, so that the first insert of a
    new day makes its partition first and every later one costs nothing.

    A day it could not make in time (its lock was busy) is taken as known all the same: its
    reads wait in the default partition until the API's pass moves them.
    """

    most: Final = 1024  # days remembered; then it starts again (each costs one lookup)

    def __init__(self) -> None:
        self._known: set[datetime] = set()

    async def ensure(self, conn: psycopg.AsyncConnection[Any], read_at: datetime) -> None:
        day = read_day(read_at)
        if day in self._known:
            return
        try:
            await ensure_partition(conn, day)
        except psycopg.errors.LockNotAvailable:
            log.warning(
                "read partition not made (busy); its reads wait in the default partition",
                extra={"action": "partition_busy", "day": day.date().isoformat()},
            )
        if len(self._known) >= self.most:
            self._known.clear()
        self._known.add(day)


async def expired_days(pool: AsyncConnectionPool[Any], keep_days: int) -> list[ExpiredDay]:
    """The days whose reads are all more than keep_days days old, oldest first."""
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(query("expired_read_days"), {"keep_days": keep_days})
        rows = await cursor.fetchall()
    return [ExpiredDay(day, partition, int(reads)) for day, partition, reads in rows]


async def prune(pool: AsyncConnectionPool[Any], keep_days: int) -> list[ExpiredDay]:
    """Drop every expired day, each in a transaction of its own (status stays exact
    after each); return the days dropped, with the reads each held."""
    dropped = []
    for expired in await expired_days(pool, keep_days):
        async with pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(query("drop_read_day"), {"day": expired.day})
            row = await cursor.fetchone()
        if not row or row[0] is None:
            continue  # another process dropped it first
        reads = int(row[0])
        DAYS_DROPPED.inc()
        READS_DROPPED.inc(reads)
        log.info(
            "read day dropped",
            extra={
                "action": "retention_drop",
                "day": expired.day.date().isoformat(),
                "reads": reads,
                "keep_days": keep_days,
            },
        )
        dropped.append(ExpiredDay(expired.day, expired.partition, reads))
    return dropped
