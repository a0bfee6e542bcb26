"""The consumer loop: read batches from the group, insert, acknowledge after commit.

* In flight: up to an adaptive limit (5–10) of jobs, each a task of its own.
* New entries come from XREADGROUP; on start this consumer first finishes its own
  pending entries. Entries left pending by a dead consumer are taken over with
  XAUTOCLAIM once idle for ``claim_idle_ms``; while a job is in flight (even
  retrying through a database outage) its entry's idle time is kept fresh, so a
  live consumer's work is never taken from it.
* Transient database errors are retried with capped exponential back-off and
  jitter, without acknowledging. An entry that is malformed, or that failed
  ``max_deliveries`` times, goes to the dead-letter stream with its error.
* The acknowledgement (XACK + XDEL, so acknowledged work does not pile up in
  Redis) happens only after the commit, and is shielded from cancellation; jobs
  that commit close together are acknowledged in one call (consumer/acks.py),
  which also reads new entries for the slots they free: one round trip per
  completion while busy; the loop's blocking XREADGROUP covers the idle case.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from consumer import metrics
from consumer.acks import Acknowledgements
from consumer.ingest import HeldConnections, insert_reads
from consumer.limit import AdaptiveLimit
from gridlens.entry import ENTRY_FIELD, EntryError, ReadBatch, decode
from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.queue import QueueDepth, ensure_group
from gridlens.scripts import script
from gridlens.settings import Settings

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1_000  # how long one XREADGROUP waits for new entries
RETRY_BASE_S = 0.2  # first back-off after a transient error
RETRY_CAP_S = 10.0  # longest back-off
HEARTBEAT_S = 2.0  # how often a consumer says it is alive
INGEST_RATE_KEEP_S = 120  # per-second ingest counters live this long
ACK_GATHER_MAX_S = 0.005  # longest an acknowledgement waits for others
ACK_GATHER_SHARE = 0.1  # of the recent insert latency
FORGET_CONSUMER_AFTER_MS = 3_600_000  # idle group members with nothing pending are removed

# Errors worth retrying as they are: the database or the network, not the data.
TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError)

Entry = tuple[bytes, dict[bytes, bytes] | None]


def consumer_name() -> str:
    """Unique per process and host, so each process has its own pending list."""
    return f"{socket.gethostname()}-{os.getpid()}"


def backoff_s(attempt: int) -> float:
    """Capped exponential back-off with jitter, for the ``attempt``-th retry (1, 2, …)."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Job:
    entry_id: str
    raw: bytes | None  # None: the entry was deleted after an earlier acknowledgement
    deliveries: int  # including this one


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
        self._connections = HeldConnections(pool)
        self.keys = Keys(settings.redis_namespace)
        self.name = name or consumer_name()
        self.limit = AdaptiveLimit(initial=settings.consumer_concurrency)
        self._ack = script(client, "ack")
        self._acknowledgements = Acknowledgements(self._acknowledge, self._gather_s)
        self._ready: collections.deque[Job] = collections.deque()  # fetched, not yet started
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._acks: set[asyncio.Future[Any]] = set()
        self._next_claim = 0.0
        # First this consumer's own pending entries ("0"), then new ones (">").
        self._cursor = "0"
        self._stop = asyncio.Event()  # run()'s, once it runs
        self._next_cleanup = 0.0

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what is in flight."""
        self._stop = stop
        await ensure_group(self.client, self.keys)
        metrics.IN_FLIGHT_LIMIT.set(self.limit.limit)
        side_tasks = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._keepalive()),
        ]
        log.info("consumer started", extra={"action": "consumer_start", "consumer": self.name})
        try:
            await self._consume()
            self._start_ready(everything=True)  # delivered to us already: finish them too
            await self._drain()
        finally:
            await self._connections.release()
            for task in side_tasks:
                task.cancel()
        with contextlib.suppress(RedisError):
            await self.client.hdel(self.keys.consumers, self.name)

    async def _consume(self) -> None:
        """Fetch and start jobs up to the limit until the stop event is set."""
        failures = 0
        while not self._stop.is_set():
            self._start_ready()
            if len(self._in_flight) >= self.limit.limit or self._ready:
                await asyncio.wait(
                    self._in_flight.values(), timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            try:
                self._cursor = await self._fetch(self._cursor)
                failures = 0
            except RedisError as error:
                failures += 1
                log.warning(
                    "redis unavailable; retrying",
                    extra={"action": "redis_retry", "error": str(error)},
                )
                await _sleep_unless(self._stop, backoff_s(failures))

    async def _fetch(self, cursor: str) -> str:
        """Fetch claimed, own pending or new entries into the ready queue; return the cursor.

        As many as there are free in-flight slots, several at once when several jobs
        finished together: entries are not held back from other consumers (nor left
        for XAUTOCLAIM if this process dies) while they wait behind its jobs.
        """
        count = self.limit.limit - len(self._in_flight)
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.settings.claim_idle_ms / 2_000
            self._ready.extend(await self._jobs(await self._claim(count), known_new=False))
            await self._forget_dead_consumers()
            if self._ready:
                return cursor
        entries = await self._read(cursor, count)
        self._ready.extend(await self._jobs(entries, known_new=cursor == ">"))
        if cursor != ">":
            return entries[-1][0].decode() if entries else ">"
        return cursor

    def _start_ready(self, *, everything: bool = False) -> None:
        while self._ready and (everything or len(self._in_flight) < self.limit.limit):
            job = self._ready.popleft()
            if job.entry_id in self._in_flight:
                continue
            task = asyncio.create_task(self._run_job(job))
            self._in_flight[job.entry_id] = task
            task.add_done_callback(functools.partial(self._finished, job.entry_id))

    async def _run_job(self, job: Job) -> None:
        await self._handle(job)
        # Hand the slot on at once: entries read with this job's acknowledgement wait in
        # the ready queue, and the loop may be blocked in XREADGROUP.
        self._in_flight.pop(job.entry_id, None)
        self._start_ready()

    def _finished(self, entry_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(entry_id, None)

    async def _read(self, cursor: str, count: int) -> list[Entry]:
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

    async def _claim(self, count: int) -> list[Entry]:
        """Take over entries idle for claim_idle_ms on any consumer (a dead one)."""
        if count <= 0:
            return []
        reply: Any = await self.client.xautoclaim(
            self.keys.stream,
            CONSUMER_GROUP,
            self.name,
            self.settings.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id is not None]
        if claimed:
            metrics.CLAIMS.inc(len(claimed))
            log.info("claimed idle entries", extra={"action": "claim", "claimed": len(claimed)})
        return claimed

    async def _jobs(self, entries: list[Entry], *, known_new: bool) -> list[Job]:
        """Jobs for entries, with how often each has been delivered."""
        if not entries:
            return []
        deliveries: dict[str, int] = {}
        if not known_new:
            pending: Any = await self.client.xpending_range(
                self.keys.stream,
                CONSUMER_GROUP,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries) + len(self._in_flight),
                consumername=self.name,
            )
            deliveries = {_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        return [
            Job(
                _text(entry_id), (fields or {}).get(ENTRY_FIELD), deliveries.get(_text(entry_id), 1)
            )
            for entry_id, fields in entries
        ]

    async def _drain(self) -> None:
        if self._in_flight:
            log.info(
                "draining", extra={"action": "consumer_drain", "in_flight": len(self._in_flight)}
            )
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        while self._in_flight:  # finishing jobs may start the last entries delivered to us
            _, unfinished = await asyncio.wait(
                list(self._in_flight.values()), timeout=max(0.0, deadline - time.monotonic())
            )
            if unfinished and time.monotonic() >= deadline:
                for task in unfinished:
                    task.cancel()  # left pending in the group: redelivered, inserted idempotently
                log.warning(
                    "grace period over; unfinished jobs stay pending",
                    extra={"action": "consumer_drain_timeout", "unfinished": len(unfinished)},
                )
                break
        if self._acks:  # acknowledgements of committed jobs always complete
            await asyncio.gather(*self._acks, return_exceptions=True)

    # ------------------------------------------------------------------ one job

    async def _handle(self, job: Job) -> None:
        started = time.perf_counter()
        if job.raw is None:
            await self._shielded(self._acknowledgements.acknowledge(job.entry_id, 0))
            return
        try:
            batch = decode(job.raw)
        except EntryError as error:
            await self._dead_letter(job, f"malformed entry: {error}")
            return
        if job.deliveries > self.settings.max_deliveries:
            await self._dead_letter(job, await self._last_error(job))
            return
        try:
            inserted = await self._insert_with_retry(batch)
        except psycopg.Error as error:  # not transient: the data, not the database
            await self._failed(job, error)
            return
        if inserted is None:
            return  # stopping: the entry stays pending and is redelivered later
        depth = await self._shielded(self._acknowledgements.acknowledge(job.entry_id, inserted))
        self._log_job(job, batch, inserted, started, depth)

    async def _insert_with_retry(self, batch: ReadBatch) -> int | None:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                with metrics.INSERT_SECONDS.time():
                    async with self._connections.connection(keep=self.limit.limit) as conn:
                        inserted = await insert_reads(conn, batch)
            except TRANSIENT_ERRORS as error:
                attempt += 1
                metrics.IN_FLIGHT_LIMIT.set(self.limit.failed())
                metrics.INSERT_RETRIES.inc()
                delay = backoff_s(attempt)
                log.warning(
                    "insert failed; retrying",
                    extra={
                        "action": "insert_retry",
                        "attempt": attempt,
                        "delay_s": round(delay, 2),
                        "error": str(error).strip().splitlines()[0]
                        if str(error).strip()
                        else type(error).__name__,
                    },
                )
                if self._stop.is_set() or not await _sleep_unless(self._stop, delay):
                    return None
                continue
            metrics.IN_FLIGHT_LIMIT.set(self.limit.observe(time.perf_counter() - started))
            return inserted

    async def _failed(self, job: Job, error: psycopg.Error) -> None:
        message = f"{type(error).__name__}: {str(error).strip()}"
        if job.deliveries >= self.settings.max_deliveries:
            await self._dead_letter(job, f"failed {job.deliveries} deliveries; last: {message}")
            return
        metrics.JOBS.labels(outcome="failed").inc()
        log.error(
            "job failed; left pending for redelivery",
            extra={
                "action": "job_failed",
                "jobId": job.entry_id,
                "deliveries": job.deliveries,
                "error": message,
            },
        )
        with contextlib.suppress(RedisError):
            await self.client.hset(self.keys.errors, job.entry_id, message)

    async def _last_error(self, job: Job) -> str:
        recorded = await self.client.hget(self.keys.errors, job.entry_id)
        reason = recorded.decode() if isinstance(recorded, bytes) else "no error recorded"
        return f"delivered {job.deliveries - 1} times without success; last: {reason}"

    # ------------------------------------------------------------------ Redis writes

    async def _shielded(self, write: Awaitable[Any]) -> Any:
        """Run a write that must not be lost to a cancellation (it follows a commit)."""
        future = asyncio.ensure_future(write)
        self._acks.add(future)
        future.add_done_callback(self._acks.discard)
        try:
            return await asyncio.shield(future)
        except RedisError as error:
            log.warning(
                "acknowledgement failed; the entry will be redelivered",
                extra={"action": "ack_failed", "error": str(error)},
            )
            return None

    async def _acknowledge(self, entry_ids: list[str], inserted: int) -> QueueDepth:
        """Acknowledge and delete entries, count them, take new entries for the slots they
        free, and read the depth: one round trip (lua/ack.lua)."""
        keys = self.keys
        second = keys.ingested_second(int(time.time()))
        reply = await self._ack(
            keys=[keys.stream, keys.errors, keys.completed, second, keys.reservations],
            args=[
                CONSUMER_GROUP,
                INGEST_RATE_KEEP_S,
                inserted,
                self.name,
                self._refill(len(entry_ids)),
                *entry_ids,
            ],
        )
        *depth, fresh = reply
        if fresh:
            self._ready.extend(await self._jobs(_entries(fresh), known_new=True))
        return QueueDepth.of(depth)

    def _gather_s(self) -> float:
        """How long an acknowledgement waits for others to share its round trip: none
        when its job is alone in flight, else a tenth of an insert's recent latency, at
        most ACK_GATHER_MAX_S. Slots are not what limits a busy consumer (PostgreSQL is),
        so the wait costs no throughput and saves Redis calls."""
        if len(self._in_flight) <= 1:
            return 0.0
        return min(ACK_GATHER_MAX_S, ACK_GATHER_SHARE * self.limit.recent_latency_s)

    def _refill(self, freed: int) -> int:
        """New entries to read with an acknowledgement that frees ``freed`` slots.

        None while stopping, before this consumer's own pending entries are done, or when
        a claim is due: the loop's own fetch does those.
        """
        if self._stop.is_set() or self._cursor != ">" or time.monotonic() >= self._next_claim:
            return 0
        free = self.limit.limit - len(self._in_flight) + freed - len(self._ready)
        return max(0, min(freed, free))

    async def _dead_letter(self, job: Job, error: str) -> None:
        async def move() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(
                    self.keys.dead_letters,
                    {
                        b"entry_id": job.entry_id,
                        b"error": error,
                        b"deliveries": job.deliveries,
                        ENTRY_FIELD: job.raw or b"",
                    },
                )
                pipe.xack(self.keys.stream, CONSUMER_GROUP, job.entry_id)
                pipe.xdel(self.keys.stream, job.entry_id)
                pipe.hdel(self.keys.errors, job.entry_id)
                await pipe.execute()

        await self._shielded(move())
        metrics.JOBS.labels(outcome="dead_lettered").inc()
        metrics.DEAD_LETTERS.inc()
        log.error(
            "entry dead-lettered",
            extra={
                "action": "dead_letter",
                "jobId": job.entry_id,
                "deliveries": job.deliveries,
                "error": error,
            },
        )

    # ------------------------------------------------------------------ side tasks

    async def _heartbeat(self) -> None:
        """Tell the status endpoint this consumer is alive, and its in-flight limit; give
        connections held without a job back to the pool."""
        while True:
            with contextlib.suppress(RedisError):
                await self.client.hset(
                    self.keys.consumers, self.name, f"{self.limit.limit}:{int(time.time() * 1000)}"
                )
            with contextlib.suppress(psycopg.Error):  # the heartbeat goes on regardless
                await self._connections.give_back_idle()
            await asyncio.sleep(HEARTBEAT_S)

    async def _keepalive(self) -> None:
        """Keep in-flight entries' idle time fresh (XCLAIM … JUSTID does not count a
        delivery), so no live consumer's work is claimed while it retries."""
        while True:
            await asyncio.sleep(self.settings.claim_idle_ms / 3_000)
            if self._in_flight:
                with contextlib.suppress(RedisError):
                    await self.client.xclaim(
                        self.keys.stream,
                        CONSUMER_GROUP,
                        self.name,
                        0,
                        list(self._in_flight),
                        justid=True,
                    )

    async def _forget_dead_consumers(self) -> None:
        """Remove group members that have nothing pending and have been idle for an hour."""
        if time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + 60.0
        members: Any = await self.client.xinfo_consumers(self.keys.stream, CONSUMER_GROUP)
        for member in members:
            if int(member["pending"]) == 0 and int(member["idle"]) > FORGET_CONSUMER_AFTER_MS:
                await self.client.xgroup_delconsumer(
                    self.keys.stream, CONSUMER_GROUP, member["name"]
                )

    # ------------------------------------------------------------------ reporting

    def _log_job(
        self, job: Job, batch: ReadBatch, inserted: int, started: float, depth: QueueDepth | None
    ) -> None:
        metrics.JOBS.labels(outcome="inserted").inc()
        metrics.READS_INSERTED.inc(inserted)
        metrics.READS_DUPLICATE.inc(len(batch) - inserted)
        if depth is not None:
            metrics.QUEUE_WAITING.set(depth.waiting)
            metrics.QUEUE_PENDING.set(depth.pending)
        log.info(
            "job done",
            extra={
                "action": "job_done",
                "jobId": job.entry_id,
                "publishId": batch.publish_id,
                "tenantId": batch.tenant_id,
                "feederId": batch.feeder_id,
                "metersCount": len(batch),
                "insertCount": inserted,
                "elapsedMs": round((time.perf_counter() - started) * 1000, 1),
                "inFlightLimit": self.limit.limit,
                "deliveries": job.deliveries,
                "waiting": depth.waiting if depth else None,
                "pending": depth.pending if depth else None,
            },
        )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, unless ``stop`` is set first; True when the whole sleep happened."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return True
    return False


def _entries(reply: list[Any]) -> list[Entry]:
    """[[id, [field, value, …]], …] as a script returns XREADGROUP's entries."""
    return [
        (entry_id, dict(zip(fields[::2], fields[1::2], strict=True))) for entry_id, fields in reply
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
