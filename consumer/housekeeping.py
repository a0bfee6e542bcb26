"""A consumer's side tasks, and the watch that keeps none of them dead in silence.

* heartbeat: tells the status endpoint this consumer is alive, with its in-flight
  limit, and gives connections held without a job back to the pool;
* keepalive: keeps in-flight entries' idle time fresh (XCLAIM … JUSTID does not count
  a delivery), so no live consumer's work is claimed while it retries;
* forgetting: removes group members with nothing pending, idle for an hour.

Each runs under ``watched``: one that raises is logged and stops the consumer, whose
process then exits non-zero and is restarted by its supervisor; a heartbeat that died
would make a live consumer look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from redis.exceptions import RedisError

from consumer.ingest import HeldConnections
from consumer.limit import AdaptiveLimit
from gridlens.connections import RedisClient
from gridlens.errors import GridLensError
from gridlens.keys import CONSUMER_GROUP, Keys

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0  # how often a consumer says it is alive
FORGET_EVERY_S = 60.0  # how often idle group members are looked for
FORGET_CONSUMER_AFTER_MS = 3_600_000  # idle group members with nothing pending are removed


class SideTaskDied(GridLensError, RuntimeError):
    """A side task of the consumer ended; the consumer stopped because of it."""


class Housekeeping:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        consumer: str,
        limit: AdaptiveLimit,
        connections: HeldConnections,
        in_flight: Callable[[], list[str]],
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.limit = limit
        self.connections = connections
        self.in_flight = in_flight
        self.claim_idle_ms = claim_idle_ms
        self.died: SideTaskDied | None = None

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The side tasks, each watched: one that dies sets ``stop`` and ``died``."""
        loops = {
            "heartbeat": self._heartbeat,
            "keepalive": self._keepalive,
            "forget_dead_consumers": self._forget_dead_consumers,
        }
        return [asyncio.create_task(self._watched(name, run, stop)) for name, run in loops.items()]

    async def _watched(
        self, name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        try:
            await run()
            raise SideTaskDied(f"{name} returned")
        except Exception as error:
            self.died = SideTaskDied(f"side task {name} died: {error!r}")
            log.error(
                "side task died; stopping the consumer",
                extra={"action": "side_task_died", "task": name, "error": repr(error)},
                exc_info=error,
            )
            stop.set()

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(RedisError):
                await self.client.hset(
                    self.keys.consumers,
                    self.consumer,
                    f"{self.limit.limit}:{int(time.time() * 1000)}",
                )
            with contextlib.suppress(psycopg.Error):  # the heartbeat goes on regardless
                await self.connections.give_back_idle()
            await asyncio.sleep(HEARTBEAT_S)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.claim_idle_ms / 3_000)
            in_flight: list[Any] = self.in_flight()
            if in_flight:
                with contextlib.suppress(RedisError):
                    await self.client.xclaim(
                        self.keys.stream, CONSUMER_GROUP, self.consumer, 0, in_flight, justid=True
                    )

    async def _forget_dead_consumers(self) -> None:
        while True:
            with contextlib.suppress(RedisError):
                members: Any = await self.client.xinfo_consumers(self.keys.stream, CONSUMER_GROUP)
                for member in members:
                    if (
                        int(member["pending"]) == 0
                        and int(member["idle"]) > FORGET_CONSUMER_AFTER_MS
                    ):
                        await self.client.xgroup_delconsumer(
                            self.keys.stream, CONSUMER_GROUP, member["name"]
                        )
            await asyncio.sleep(FORGET_EVERY_S)


async def stop_side_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the side tasks and wait until they have ended.

    A cancellation that lands as a Redis call completes can be swallowed below us (the
    task then sleeps on), so each pass cancels whatever is still running.
    """
    while running := [task for task in tasks if not task.done()]:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=0.1)
