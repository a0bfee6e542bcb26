"""The stream as a queue: its consumer group and its depth."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from gridlens.keys import CONSUMER_GROUP, Keys


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
    waiting: int  # in the stream, not yet delivered to a consumer
    pending: int  # delivered, not yet acknowledged


async def queue_depth(client: aioredis.Redis, keys: Keys) -> QueueDepth:
    """Waiting and pending entries, read in one MULTI so they agree.

    Acknowledged entries are deleted from the stream, so its length is exactly
    waiting + pending. This needs no XINFO ``lag``, which Redis 6.2 lacks.
    """
    async with client.pipeline(transaction=True) as pipe:
        pipe.xlen(keys.stream)
        pipe.xpending(keys.stream, CONSUMER_GROUP)
        length, summary = await pipe.execute(raise_on_error=False)
    if isinstance(length, Exception):
        raise length
    if isinstance(summary, redis_errors.ResponseError) and "NOGROUP" in str(summary):
        return QueueDepth(waiting=int(length), pending=0)  # no consumer has started yet
    if isinstance(summary, Exception):
        raise summary
    pending = int(summary["pending"])
    return QueueDepth(waiting=max(int(length) - pending, 0), pending=pending)
