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
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from consumer import metrics
from consumer.acks import Acknowledgements
from consumer.fetch import Fetcher
from consumer.housekeeping import Housekeeping, stop_side_tasks
from consumer.ingest import HeldConnections, insert_reads, partition_race
from consumer.limit import AdaptiveLimit
from consumer.slots import Job, Slots
from gridlens import failover
from gridlens.connections import RedisClient
from gridlens.entry import ENTRY_FIELD, EntryError, ReadBatch, decode
from gridlens.errors import first_line
from gridlens.failover import through_failover
from gridlens.keys import CONSUMER_GROUP, RATE_HISTORY_S, Keys
from gridlens.partitions import PartitionDays
from gridlens.queue import ensure_group
from gridlens.scripts import Acknowledged, QueueDepth, Scripts
from gridlens.settings import Settings
from gridlens.waits import sleep_unless

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.2  # first back-off after a transient error
# Longest back-off: short, so that a job resumes within seconds of a failover or restart;
# the in-flight limit falls to its minimum meanwhile, so the retries stay few.
RETRY_CAP_S = 3.0
ACK_GATHER_MAX_S = 0.005  # longest an acknowledgement waits for others
ACK_GATHER_SHARE = 0.1  # of the recent insert latency

# Errors worth retrying as they are: the database or the network, not the data. A
# read-only transaction is a standby: the primary failed over and this connection was left
# on the old one (a URL without target_session_attrs=read-write).
TRANSIENT_ERRORS = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
    TimeoutError,
)


def consumer_name() -> str:
    """Unique per process and host, so each process has its own pending list."""
    return f"{socket.gethostname()}-{os.getpid()}"


def backoff_s(attempt: int) -> float:
    """Capped exponential back-off with jitter, for the ``attempt``-th retry (1, 2, …)."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


class Consumer:
    def __init__(
        self,
        settings: Settings,
        client: RedisClient,
        pool: AsyncConnectionPool[Any],
        *,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self._connections = HeldConnections(pool)
        self._partitions = PartitionDays()  # the first job of a new day makes its partition
        self.keys = Keys(settings.redis_namespace)
        self.name = name or consumer_name()
        self.limit = AdaptiveLimit(initial=settings.consumer_concurrency)
        self._scripts = Scripts(client, self.keys)
        self._acknowledgements = Acknowledgements(self._acknowledge, self._gather_s)
        self._slots = Slots(self.limit, self._handle)
        self._fetcher = Fetcher(client, self.keys, self.name, settings.claim_idle_ms)
        self._housekeeping = Housekeeping(
            client,
            self.keys,
            self.name,
            self.limit,
            self._connections,
            lambda: self._slots.in_flight,
            settings.claim_idle_ms,
        )
        self._acks: set[asyncio.Future[Any]] = set()
        self._stop = asyncio.Event()  # run()'s, once it runs

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish what is in flight.

        Raises SideTaskDied (after draining) when a side task died and stopped it.
        """
        self._stop = stop
        await ensure_group(self.client, self.keys)
        metrics.IN_FLIGHT_LIMIT.set(self.limit.limit)
        side_tasks = self._housekeeping.start(stop)
        log.info("consumer started", extra={"action": "consumer_start", "consumer": self.name})
        try:
            await self._consume()
            await self._slots.drain(self.settings.shutdown_grace_s)
            if self._acks:  # acknowledgements of committed jobs always complete
                await asyncio.gather(*self._acks, return_exceptions=True)
        finally:
            await self._connections.release()
            await stop_side_tasks(side_tasks)
        with contextlib.suppress(RedisError):
            await self.client.hdel(self.keys.consumers, self.name)
        if self._housekeeping.died is not None:
            raise self._housekeeping.died

    async def _consume(self) -> None:
        """Fetch and start jobs up to the limit until the stop event is set."""
        failures = 0
        while not self._stop.is_set():
            self._slots.start_ready()
            if self._slots.busy:
                await self._slots.wait_any(timeout_s=1.0)
                continue
            try:
                in_flight = self._slots.running
                self._slots.add(await self._fetcher.fetch(self._slots.free(), in_flight))
                failures = 0
            except RedisError as error:
                failures += 1
                log.warning(
                    "redis unavailable; retrying",
                    extra={"action": "redis_retry", "error": str(error)},
                )
                await sleep_unless(self._stop, min(failover.RETRY_CAP_S, backoff_s(failures)))

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
                        await self._partitions.ensure(conn, batch.read_at)
                        inserted = await insert_reads(conn, batch)
            except (*TRANSIENT_ERRORS, psycopg.errors.CheckViolation) as error:
                if not isinstance(error, TRANSIENT_ERRORS) and not partition_race(error):
                    raise
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
                        "error": first_line(error),
                    },
                )
                if self._stop.is_set() or not await sleep_unless(self._stop, delay):
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
        free, and read the depth: one round trip (lua/ack.lua).

        Through a failover the acknowledgement is tried again, without the new entries (a
        reply lost with the old primary may have taken some: they are claimed when idle).
        An entry the new primary never had is acknowledged for nothing, harmlessly.
        """
        attempts = 0

        async def ack() -> Acknowledged:
            nonlocal attempts
            attempts += 1
            return await self._scripts.ack(
                entry_ids=entry_ids,
                reads_inserted=inserted,
                ingested_second=self.keys.ingested_second(int(time.time())),
                counter_ttl_s=RATE_HISTORY_S,
                consumer=self.name,
                refill=self._refill(len(entry_ids)) if attempts == 1 else 0,
            )

        done = await through_failover("ack", self.settings.failover_timeout_s, ack)
        if done.fresh:
            in_flight = self._slots.running
            self._slots.add(
                await self._fetcher.jobs(done.fresh, known_new=True, in_flight=in_flight)
            )
        return done.depth

    def _gather_s(self) -> float:
        """How long an acknowledgement waits for others to share its round trip: none
        when its job is alone in flight, else a tenth of an insert's recent latency, at
        most ACK_GATHER_MAX_S. Slots are not what limits a busy consumer (PostgreSQL is),
        so the wait costs no throughput and saves Redis calls."""
        if self._slots.running <= 1:
            return 0.0
        return min(ACK_GATHER_MAX_S, ACK_GATHER_SHARE * self.limit.recent_latency_s)

    def _refill(self, freed: int) -> int:
        """New entries to read with an acknowledgement that frees ``freed`` slots.

        None while stopping, before this consumer's own pending entries are done, or when
        a claim is due: the loop's own fetch does those.
        """
        if self._stop.is_set() or not self._fetcher.reading_new:
            return 0
        return max(0, min(freed, self._slots.free(freed)))

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

    # ------------------------------------------------------------------ reporting

    def _log_job(
        self, job: Job, batch: ReadBatch, inserted: int, started: float, depth: QueueDepth | None
    ) -> None:
        metrics.JOBS.labels(outcome="inserted").inc()
        metrics.READS_INSERTED.inc(inserted)
        metrics.READS_DUPLICATE.inc(len(batch) - inserted)
        if batch.late and inserted:
            tenant = metrics.tenant_label(batch.tenant_id)
            metrics.LATE_READS.labels(tenant).inc(inserted)
            lateness = datetime.now(UTC) - batch.read_at
            metrics.LATENESS_SECONDS.labels(tenant).observe(lateness.total_seconds())
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
