"""The stream as a queue: its consumer group and its depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.scripts import script


async def ensure_group(client: aioredis.Redis, keys: Keys) -> None:
    """Create the stream and its consumer group unless they exist (idempotent).

    The group starts at id 0, so entries written before any consumer ran are read.
    """
    try:
        await client.xgroup_create(keys.stream, CONSUMER_GROUP, id="0", mkstream=True)
    except redis_errors.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


@dataclass(frozen=True)
class QueueDepth:
    """The queue as SPEC §4 counts it (gridlens/lua/depth.lua has the definition)."""

    waiting: int  # in the stream, not yet delivered to a consumer
    pending: int  # delivered, not yet acknowledged
    delayed: int  # jobs reserved by publishes in progress, not yet written
    delayed_reads: int  # the reads of those jobs

    @classmethod
    def of(cls, reply: Sequence[Any]) -> QueueDepth:
        """From the reply of a script that returns queue_depth()."""
        waiting, pending, delayed, delayed_reads = (int(value) for value in reply)
        return cls(waiting, pending, delayed, delayed_reads)


async def queue_depth(client: aioredis.Redis, keys: Keys) -> QueueDepth:
    """The queue's depth, read in one atomic step (lua/queue_state.lua)."""
    reply = await script(client, "queue_state")(
        keys=[keys.stream, keys.reservations], args=[CONSUMER_GROUP]
    )
    return QueueDepth.of(reply)
