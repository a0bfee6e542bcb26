"""Slot accounting: the jobs a consumer has fetched (ready) and is running (in flight).

A job starts when a slot is free under the adaptive limit. When it ends, its slot is
handed on at once to the next ready job: entries read with its acknowledgement wait
in the ready queue while the loop may be blocked in XREADGROUP.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from consumer.limit import AdaptiveLimit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    entry_id: str
    raw: bytes | None  # None: the entry was deleted after an earlier acknowledgement
    deliveries: int  # including this one


class Slots:
    def __init__(self, limit: AdaptiveLimit, run: Callable[[Job], Awaitable[None]]) -> None:
        self.limit = limit
        self._run = run
        self._ready: collections.deque[Job] = collections.deque()
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    @property
    def in_flight(self) -> list[str]:
        """The entry ids of the jobs running now."""
        return list(self._in_flight)

    @property
    def running(self) -> int:
        """How many jobs are running now."""
        return len(self._in_flight)

    @property
    def busy(self) -> bool:
        """Every slot is taken, or jobs already wait for one: fetch nothing more now."""
        return len(self._in_flight) >= self.limit.limit or bool(self._ready)

    def free(self, freed: int = 0) -> int:
        """Slots free once ``freed`` running jobs end, less the jobs already waiting."""
        return self.limit.limit - len(self._in_flight) + freed - len(self._ready)

    def add(self, jobs: Iterable[Job]) -> None:
        self._ready.extend(jobs)

    def start_ready(self, *, everything: bool = False) -> None:
        """Start ready jobs while slots are free (all of them when ``everything``)."""
        while self._ready and (everything or len(self._in_flight) < self.limit.limit):
            job = self._ready.popleft()
            if job.entry_id not in self._in_flight:
                self._in_flight[job.entry_id] = asyncio.create_task(self._job(job))

    async def _job(self, job: Job) -> None:
        try:
            await self._run(job)
        except Exception:  # a bug, not a fault: the entry stays pending, redelivered later
            log.exception("job crashed", extra={"action": "job_crashed", "jobId": job.entry_id})
        finally:
            self._in_flight.pop(job.entry_id, None)
        self.start_ready()

    async def wait_any(self, timeout_s: float) -> None:
        """Until a running job ends, or ``timeout_s``."""
        if self._in_flight:
            await asyncio.wait(
                self._in_flight.values(), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )

    async def drain(self, grace_s: float) -> None:
        """Run every ready job to its end within ``grace_s``; cancel what is left then.

        A cancelled job's entry stays pending in the group: redelivered, inserted
        idempotently.
        """
        self.start_ready(everything=True)  # delivered to us already: finish them too
        if self._in_flight:
            log.info(
                "draining", extra={"action": "consumer_drain", "in_flight": len(self._in_flight)}
            )
        deadline = time.monotonic() + grace_s
        while self._in_flight:  # finishing jobs may start the last entries delivered to us
            _, unfinished = await asyncio.wait(
                list(self._in_flight.values()), timeout=max(0.0, deadline - time.monotonic())
            )
            if unfinished and time.monotonic() >= deadline:
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
                log.warning(
                    "grace period over; unfinished jobs stay pending",
                    extra={"action": "consumer_drain_timeout", "unfinished": len(unfinished)},
                )
                return
