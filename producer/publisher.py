"""The paced publisher: admission, then one job at a time under the shared rate limit.

Every limit is enforced in Redis, by the Redis server's clock, so it holds across
any number of API processes:

* admission (``gridlens/lua/reserve.lua``): waiting + delayed above the depth cap refuses
  the publish; otherwise its jobs are reserved (they count as "delayed" until
  written) and the tenant's cursor is claimed, in one atomic step;
* each job (``gridlens/lua/enqueue.lua``): written only when the reads enqueued in the last
  second, plus its own, stay within the rate cap, and at least n/cap seconds after
  the previous job of n reads; the check and the XADD are one atomic step.

Each batch is generated just before it is written, so a publish holds one batch
in memory whatever its size.

A failover part-way (gridlens/failover.py) pauses the publish: each call is tried again
until the deployment has a primary, for up to ``failover_timeout_s``. With
``min_replicas`` a job counts as written only once that many replicas acknowledged it;
one whose write was not confirmed is written again, on the new primary if the old one
died (a duplicate is harmless: the insert is idempotent; the copy is paced like any job).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Final

from redis.exceptions import RedisError

from gridlens.connections import RedisClient
from gridlens.entry import ENTRY_FIELD, ReadBatch, encode
from gridlens.errors import GridLensError
from gridlens.failover import FailoverRetry, Unconfirmed, through_failover
from gridlens.keys import Keys
from gridlens.scripts import Admitted, Enqueued, Refused, Scripts, enqueue_outcome
from gridlens.settings import Caps
from producer import backlog, metrics
from producer.backlog import Backlog, plan_with_backlog
from producer.batch import generate_batch
from producer.events import Event
from producer.pace import PaceLog
from producer.planner import Plan
from producer.request import PublishRequest

log = logging.getLogger(__name__)

LEASE_US: Final = 30_000_000  # a reservation not refreshed for this long is dropped
WINDOW_US: Final = 1_001_000  # 1 s and 1 ms: entry ids (ms) never see more than the cap
MAX_WAIT_S: Final = 1.1  # longest single sleep while paced
CURSOR_RETRIES: Final = 5


class Backpressure(GridLensError):
    """The queue is too deep: the publish was refused and nothing was enqueued."""

    def __init__(self, waiting: int, delayed: int) -> None:
        super().__init__(f"waiting {waiting} + delayed {delayed}")
        self.waiting = waiting
        self.delayed = delayed


class PublishFailed(GridLensError):
    """Redis failed part-way: ``jobs`` of ``planned_jobs`` went out."""

    def __init__(
        self, error: RedisError, jobs: int, reads: int, plan: Plan, planned_jobs: int
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.jobs = jobs
        self.reads = reads
        self.plan = plan
        self.planned_jobs = planned_jobs  # the late jobs of a buffered outage included


@dataclass(frozen=True)
class Published:
    plan: Plan
    publish_id: str
    jobs: int  # late jobs included
    reads: int  # rows enqueued for the interval (after comms-outage skips)
    skipped_reads: int  # meters in a comms outage: no row
    elapsed_s: float
    pace: PaceLog  # when each job was written, by the server's clock
    late_reads: int = 0  # a buffered outage's missed reads, delivered now
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Sent:
    """What a publish has written so far."""

    pace: PaceLog
    jobs: int = 0
    reads: int = 0
    late_reads: int = 0
    skipped: int = 0


class Publisher:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        caps: Caps,
        *,
        min_replicas: int = 0,
        failover_timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.caps = caps
        self.failover_timeout_s = failover_timeout_s
        self.scripts = Scripts(client, keys, min_replicas=min_replicas)

    async def plan(self, request: PublishRequest, events: list[Event]) -> tuple[Plan, Backlog]:
        """The plan a publish would follow now (the tenant's cursor as it stands)."""
        cursor = await self.client.get(self.keys.cursor(request.tenant_id))
        return plan_with_backlog(request, events, self.caps.jobs_per_publish, int(cursor or 1))

    async def publish(self, request: PublishRequest, events: list[Event]) -> Published:
        """Admit the publish and enqueue every job of its plan, paced: the interval's, then
        the reads a buffered outage kept (producer/backlog.py)."""
        publish_id = uuid.uuid4().hex[:16]
        started = time.monotonic()
        plan, late, cursor_before = await self._admit(request, events, publish_id)
        planned_jobs = plan.jobs + len(late.jobs)
        sent = _Sent(PaceLog(self.caps.reads_per_second))
        try:
            for feeder, meters in plan.job_meters():
                batch = generate_batch(
                    publish_id=publish_id,
                    tenant_id=request.tenant_id,
                    feeder=feeder,
                    meter_numbers=meters,
                    read_at=request.read_at,
                    interval_minutes=request.interval_minutes,
                    events=events,
                    mix=request.mix,
                )
                sent.skipped += len(meters) - len(batch)
                await self._send(batch, len(meters), publish_id, sent)
            await self._send_late(request, late, events, publish_id, sent)
        except RedisError as error:
            await self._give_back(publish_id, request.tenant_id, plan, cursor_before)
            log.error(
                "publish failed part-way",
                extra={
                    "action": "publish_failed",
                    "publishId": publish_id,
                    "jobs": sent.jobs,
                    "plannedJobs": planned_jobs,
                    "reads": sent.reads + sent.late_reads,
                    "error": str(error),
                },
            )
            raise PublishFailed(
                error, sent.jobs, sent.reads + sent.late_reads, plan, planned_jobs
            ) from error
        await through_failover(
            "release",
            self.failover_timeout_s,
            lambda: self.scripts.release(publish_id=publish_id, tenant_id=request.tenant_id),
        )
        elapsed_s = time.monotonic() - started
        return Published(
            plan,
            publish_id,
            sent.jobs,
            sent.reads,
            sent.skipped,
            elapsed_s,
            sent.pace,
            sent.late_reads,
            late.warnings(),
        )

    async def _send_late(
        self,
        request: PublishRequest,
        late: Backlog,
        events: list[Event],
        publish_id: str,
        sent: _Sent,
    ) -> None:
        """The reads a buffered outage kept, as they were read then, marked late."""
        as_read = backlog.as_read(events, request)
        for job in late.jobs:
            batch = generate_batch(
                publish_id=publish_id,
                tenant_id=request.tenant_id,
                feeder=job.feeder,
                meter_numbers=job.meters,
                read_at=job.read_at,
                interval_minutes=request.interval_minutes,
                events=as_read,
                mix=request.mix,
                late=True,
            )
            await self._send(batch, len(job.meters), publish_id, sent)

    async def _send(self, batch: ReadBatch, reserved: int, publish_id: str, sent: _Sent) -> None:
        """One job written, paced; nothing when every meter of it is in a comms outage."""
        if len(batch) == 0:
            return
        written_us = await self._enqueue_paced(
            encode(batch), len(batch), reserved, publish_id, sent.pace
        )
        sent.pace.add(written_us, len(batch))
        sent.jobs += 1
        if batch.late:
            sent.late_reads += len(batch)
        else:
            sent.reads += len(batch)
        metrics.JOBS_ENQUEUED.inc()
        metrics.READS_ENQUEUED.inc(len(batch))

    async def _admit(
        self, request: PublishRequest, events: list[Event], publish_id: str
    ) -> tuple[Plan, Backlog, str]:
        stored = await through_failover(
            "cursor",
            self.failover_timeout_s,
            lambda: self.client.get(self.keys.cursor(request.tenant_id)),
        )
        cursor = stored.decode() if isinstance(stored, bytes) else ""
        for _ in range(CURSOR_RETRIES):
            raw = cursor
            plan, late = plan_with_backlog(
                request, events, self.caps.jobs_per_publish, int(raw or 1)
            )
            reserve = functools.partial(
                self.scripts.reserve,
                publish_id=publish_id,
                tenant_id=request.tenant_id,
                jobs=plan.jobs + len(late.jobs),
                reads=plan.meters + late.reads,
                max_depth=self.caps.queue_depth,
                lease_us=LEASE_US,
                cursor_seen=raw,
                cursor_after=plan.next_cursor,
            )
            try:
                # Admission is safe to repeat: a publish found admitted already stays admitted.
                outcome = await through_failover("reserve", self.failover_timeout_s, reserve)
            except Unconfirmed as error:
                # Admitted on the primary, but no replica has it: undo it, write nothing.
                await self._give_back(publish_id, request.tenant_id, plan, raw)
                raise PublishFailed(error, 0, 0, plan, plan.jobs + len(late.jobs)) from error
            if isinstance(outcome, Admitted):
                metrics.RESERVED_JOBS.set(outcome.delayed + plan.jobs + len(late.jobs))
                return plan, late, raw
            if isinstance(outcome, Refused):
                raise Backpressure(waiting=outcome.waiting, delayed=outcome.delayed)
            cursor = outcome.cursor  # another publish of this tenant moved it: plan again
        raise RedisError("the tenant's cursor kept moving; too many concurrent publishes")

    async def _enqueue_paced(
        self, entry: bytes, reads: int, reserved: int, publish_id: str, pace: PaceLog
    ) -> int:
        """Write the entry once the rate limit allows, until a write of it is confirmed;
        return the server time (µs) of that write. Copies whose confirmation failed still
        went through the limiter: ``pace`` records them."""
        retry = FailoverRetry("enqueue", self.failover_timeout_s)
        settles = True
        while True:
            try:
                outcome = await self.scripts.enqueue(
                    entry=entry,
                    entry_field=ENTRY_FIELD,
                    reads=reads,
                    cap=self.caps.reads_per_second,
                    window_us=WINDOW_US,
                    publish_id=publish_id,
                    reserved_reads=reserved,
                    lease_us=LEASE_US,
                    settles=settles,
                )
            except RedisError as error:
                if isinstance(error, Unconfirmed):
                    unconfirmed = enqueue_outcome(error.reply)
                    assert isinstance(unconfirmed, Enqueued)  # "not yet" needs no confirming
                    pace.add(unconfirmed.written_us, reads)
                settles = False  # the earlier write may have settled the reservation
                await retry.pause(error)
                continue
            if isinstance(outcome, Enqueued):
                return outcome.written_us
            await asyncio.sleep(min(outcome.wait_us / 1e6, MAX_WAIT_S))

    async def _give_back(
        self, publish_id: str, tenant_id: str, plan: Plan, cursor_before: str
    ) -> None:
        """Best effort after a failure: drop the reservation and return the cursor."""
        # If Redis is down this fails too; the reservation's lease then expires on its own.
        with contextlib.suppress(RedisError):
            await self.scripts.release(
                publish_id=publish_id,
                tenant_id=tenant_id,
                cursor_set=str(plan.next_cursor),
                cursor_back=cursor_before,
            )
