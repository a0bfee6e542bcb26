"""The stream as a queue: its consumer group and its depth."""

from __future__ import annotations

from redis import exceptions as redis_errors

from gridlens.connections import RedisClient
from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.scripts import QueueDepth, Scripts


async def ensure_group(client: RedisClient, keys: Keys) -> None:
    """Create the stream and its consumer group unless they exist (idempotent).

    The group starts at id 0, so entries written before any consumer ran are read.
    """
    try:
        await client.xgroup_create(keys.stream, CONSUMER_GROUP, id="0", mkstream=True)
    except redis_errors.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def missing_group(error: BaseException) -> bool:
    """The stream or its group is not there: a new primary that never received them (a
    failover lost the writes that made them), or a stream deleted by hand."""
    return isinstance(error, redis_errors.ResponseError) and str(error).startswith("NOGROUP")


async def queue_depth(client: RedisClient, keys: Keys) -> QueueDepth:
    """The queue's depth, read in one atomic step (lua/queue_state.lua)."""
    return await Scripts(client, keys).queue_depth()
