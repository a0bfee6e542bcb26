"""The consumer loop: read batches from the group, insert, acknowledge after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from consumer import metrics
from consumer.ingest import insert_batch
from gridlens.entry import ENTRY_FIELD, EntryError, ReadBatch, decode
from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.queue import ensure_group, queue_depth
from gridlens.settings import Settings

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1_000  # how long one XREADGROUP waits for new entries
RETRY_BASE_S = 0.2  # first back-off after a transient database error
RETRY_CAP_S = 10.0  # longest back-off
HEARTBEAT_S = 2.0  # how often a consumer says it is alive
INGEST_RATE_KEEP_S = 120  # per-second ingest counters live this long


def consumer_name() -> str:
    """Unique per process and host, so each process has its own pending list."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    def __init__(
        self,
        settings: Settings,
        client: aioredis.Redis,
        pool: AsyncConnectionPool[Any],
        *,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.pool = pool
        self.keys = Keys(settings.redis_namespace)
        self.name = name or consumer_name()
        self.in_flight_limit = settings.consumer_concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what is in flight."""
        await ensure_group(self.client, self.keys)
        metrics.IN_FLIGHT_LIMIT.set(self.in_flight_limit)
        heartbeat = asyncio.create_task(self._heartbeat())
        log.info("consumer started", extra={"action": "consumer_start", "consumer": self.name})
        cursor = "0"  # first this consumer's own pending entries, then new ones (">")
        while not stop.is_set():
            if len(self._tasks) >= self.in_flight_limit:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            entries = await self._read(cursor, self.in_flight_limit - len(self._tasks))
            if cursor != ">":
                if not entries:
                    cursor = ">"
                    continue
                cursor = entries[-1][0].decode()
            for entry_id, fields in entries:
                task = asyncio.create_task(self._handle(entry_id.decode(), fields, stop))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        await self._drain()
        heartbeat.cancel()
        await self.client.hdel(self.keys.consumers, self.name)

    async def _heartbeat(self) -> None:
        """Tell the status endpoint this consumer is alive, and its in-flight limit."""
        while True:
            with contextlib.suppress(RedisError):
                await self.client.hset(
                    self.keys.consumers,
                    self.name,
                    f"{self.in_flight_limit}:{int(time.time() * 1000)}",
                )
            await asyncio.sleep(HEARTBEAT_S)

    async def _read(self, cursor: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = await self.client.xreadgroup(
            CONSUMER_GROUP,
            self.name,
            {self.keys.stream: cursor},
            count=count,
            block=READ_BLOCK_MS if cursor == ">" else None,
        )
        if not reply:
            return []
        _stream, entries = reply[0]
        return list(entries)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info("draining", extra={"action": "consumer_drain", "in_flight": len(self._tasks)})
        _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
        for task in pending:
            task.cancel()  # left pending in the group: redelivered, inserted idempotently
        if pending:
            log.warning(
                "grace period over; unfinished jobs stay pending",
                extra={"action": "consumer_drain_timeout", "unfinished": len(pending)},
            )

    async def _handle(
        self, entry_id: str, fields: dict[bytes, bytes] | None, stop: asyncio.Event
    ) -> None:
        started = time.perf_counter()
        raw = (fields or {}).get(ENTRY_FIELD)
        if raw is None:
            # Deleted after a previous delivery was acknowledged: nothing left to do.
            await self._acknowledge(entry_id)
            return
        try:
            batch = decode(raw)
        except EntryError as error:
            await self._dead_letter(entry_id, raw, str(error))
            return
        inserted = await self._insert_with_retry(batch, stop)
        if inserted is None:
            return  # stopping: the entry stays pending and is redelivered later
        # The acknowledgement must not be lost to a cancellation once the rows are committed.
        await asyncio.shield(self._acknowledge(entry_id, inserted))
        await self._log_job(entry_id, batch, inserted, started)

    async def _insert_with_retry(self, batch: ReadBatch, stop: asyncio.Event) -> int | None:
        attempt = 0
        while True:
            try:
                with metrics.INSERT_SECONDS.time():
                    return await insert_batch(self.pool, batch)
            except (psycopg.OperationalError, TimeoutError) as error:
                attempt += 1
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)
                log.warning(
                    "insert failed; retrying",
                    extra={
                        "action": "insert_retry",
                        "attempt": attempt,
                        "delay_s": round(delay, 2),
                        "error": str(error),
                    },
                )
                if stop.is_set():
                    return None
                await asyncio.sleep(delay)

    async def _acknowledge(self, entry_id: str, inserted: int = 0) -> None:
        """Acknowledge and delete the entry; count it, and its reads for the ingest rate."""
        second = self.keys.ingested_second(int(time.time()))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.stream, CONSUMER_GROUP, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            pipe.incr(self.keys.completed)
            pipe.incrby(second, inserted)
            pipe.expire(second, INGEST_RATE_KEEP_S)
            await pipe.execute()

    async def _dead_letter(self, entry_id: str, raw: bytes, error: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.dead_letters, {b"entry_id": entry_id, b"error": error, ENTRY_FIELD: raw}
            )
            pipe.xack(self.keys.stream, CONSUMER_GROUP, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            await pipe.execute()
        metrics.JOBS.labels(outcome="dead_lettered").inc()
        log.error(
            "entry dead-lettered",
            extra={"action": "dead_letter", "jobId": entry_id, "error": error},
        )

    async def _log_job(
        self, entry_id: str, batch: ReadBatch, inserted: int, started: float
    ) -> None:
        depth = await queue_depth(self.client, self.keys)
        metrics.JOBS.labels(outcome="inserted").inc()
        metrics.READS_INSERTED.inc(inserted)
        metrics.READS_DUPLICATE.inc(len(batch) - inserted)
        log.info(
            "job done",
            extra={
                "action": "job_done",
                "jobId": entry_id,
                "tenantId": batch.tenant_id,
                "feederId": batch.feeder_id,
                "metersCount": len(batch),
                "insertCount": inserted,
                "elapsedMs": round((time.perf_counter() - started) * 1000, 1),
                "inFlightLimit": self.in_flight_limit,
                "waiting": depth.waiting,
                "pending": depth.pending,
            },
        )
