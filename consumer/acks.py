"""Acknowledgements coalesced: one Redis call for the jobs that commit close together.

When none is under way, a job's acknowledgement waits ``gather()`` seconds (the
consumer says how long: none when the job is alone, a small part of an insert's
time when others may finish soon) for others, then goes out; jobs that commit
while a call is out go together in the next one. An idle consumer acknowledges
each job at once, a busy one several jobs per round trip, so the Redis calls per
job fall as the load rises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gridlens.scripts import QueueDepth

# Acknowledge these entry ids, which inserted that many reads; the depth after.
AckCall = Callable[[list[str], int], Awaitable[QueueDepth]]


class Acknowledgements:
    def __init__(self, call: AckCall, gather: Callable[[], float] = lambda: 0.0) -> None:
        self._call = call
        self._gather = gather
        self._waiting: list[tuple[str, int, asyncio.Future[QueueDepth]]] = []
        self._sending: asyncio.Task[None] | None = None

    def acknowledge(self, entry_id: str, inserted: int) -> asyncio.Future[QueueDepth]:
        """The queue's depth once the entry is acknowledged and deleted."""
        done: asyncio.Future[QueueDepth] = asyncio.get_running_loop().create_future()
        self._waiting.append((entry_id, inserted, done))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        return done

    async def _send(self) -> None:
        try:
            wait_s = self._gather()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    depth = await self._call(
                        [entry_id for entry_id, _, _ in batch],
                        sum(inserted for _, inserted, _ in batch),
                    )
                except Exception as error:  # each job's caller reports it
                    for *_, done in batch:
                        done.set_exception(error)
                else:
                    for *_, done in batch:
                        done.set_result(depth)
        finally:
            self._sending = None
