"""The Lua scripts of gridlens/lua/, each behind one typed call.

Each script runs as one atomic step inside Redis, loaded with the shared functions of
lua/depth.lua before it; redis-py sends it by its SHA1 (EVALSHA) and loads it again
if Redis lost it. The order of a script's KEYS and ARGV lives here, beside the call,
and its reply comes back as a named result.

With ``min_replicas`` the publisher's admissions and jobs are confirmed: WAIT follows the
script on the same connection, and a write fewer replicas acknowledged raises Unconfirmed
(gridlens/failover.py), to be written again. A reply that says nothing was written (a
refusal, "not yet") needs no confirmation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError, RedisClusterException

from gridlens.connections import RedisClient
from gridlens.failover import Unconfirmed
from gridlens.keys import CONSUMER_GROUP, RATE_HISTORY_S, Keys

REPLICA_WAIT_MS: Final = 1_000  # how long a confirmed write waits for its replicas
# The publisher's writes that must survive a failover: an admission, a job. (A release lost
# with a primary leaves a reservation that over-counts until its lease runs out.)
CONFIRMED: Final = frozenset({"reserve", "enqueue"})


@dataclass(frozen=True)
class QueueDepth:
    """The queue as SPEC §4 counts it (lua/depth.lua has the definition)."""

    waiting: int  # in the stream, not yet delivered to a consumer
    pending: int  # delivered, not yet acknowledged
    delayed: int  # jobs reserved by publishes in progress, not yet written
    delayed_reads: int  # the reads of those jobs

    @classmethod
    def of(cls, reply: Sequence[Any]) -> QueueDepth:
        waiting, pending, delayed, delayed_reads = (int(value) for value in reply)
        return cls(waiting, pending, delayed, delayed_reads)


@dataclass(frozen=True)
class Admitted:
    """The publish's jobs are reserved and the tenant's cursor claimed."""

    waiting: int
    delayed: int  # before this publish's own jobs


@dataclass(frozen=True)
class Refused:
    """The queue is too deep: nothing was reserved."""

    waiting: int
    delayed: int


@dataclass(frozen=True)
class CursorMoved:
    """Another publish of the tenant moved its cursor: plan again from this one."""

    cursor: str


@dataclass(frozen=True)
class Enqueued:
    entry_id: str
    written_us: int  # the server's clock at the XADD


@dataclass(frozen=True)
class NotYet:
    """The rate limit does not admit the job yet."""

    wait_us: int


@dataclass(frozen=True)
class Acknowledged:
    depth: QueueDepth  # after the acknowledgement
    fresh: list[tuple[bytes, dict[bytes, bytes]]]  # new entries read for the freed slots


class Scripts:
    """The scripts of one deployment's keys, on one client."""

    def __init__(self, client: RedisClient, keys: Keys, *, min_replicas: int = 0) -> None:
        self.client = client
        self.keys = keys
        self.min_replicas = min_replicas
        self._calls = {
            name: client.register_script(_source(name))
            for name in ("reserve", "enqueue", "release", "ack", "queue_state")
        }

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.min_replicas == 0 or name not in CONFIRMED:
            return await self._calls[name](keys=keys, args=args)
        reply, replicas = await self._run_and_wait(name, keys, args)
        wrote = int(reply[0]) == 1  # admitted, enqueued (both scripts answer 1 first)
        if wrote and replicas < self.min_replicas:
            raise Unconfirmed(replicas, self.min_replicas, reply)
        return reply

    async def _run_and_wait(self, name: str, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """The script's reply, and how many replicas acknowledged its writes: WAIT goes in
        one pipeline with it, so on the same connection (WAIT counts that connection's
        writes). On a cluster both go to the node of the keys' slot; if the slot moved in
        between, WAIT saw another node and the write counts as unconfirmed."""
        script = self._calls[name]
        for _ in range(2):  # once more after loading a script the server did not have
            node = await _node_of(self.client, keys[0])
            async with self.client.pipeline(transaction=False) as pipe:
                # execute_command: a cluster pipeline refuses its evalsha() method.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                if node is None:
                    pipe.execute_command("WAIT", self.min_replicas, REPLICA_WAIT_MS)
                else:
                    pipe.execute_command(
                        "WAIT", self.min_replicas, REPLICA_WAIT_MS, target_nodes=node
                    )
                try:
                    reply, replicas = await pipe.execute(raise_on_error=False)
                except RedisClusterException as error:
                    raise ClusterDownError(str(error)) from error
            if isinstance(reply, NoScriptError):
                await self.client.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            # A WAIT that failed (it reached a node demoted meanwhile) confirmed nothing.
            moved = node is not None and node != await _node_of(self.client, keys[0])
            confirmed = 0 if moved or isinstance(replicas, Exception) else int(replicas)
            return reply, confirmed
        raise NoScriptError(f"the {name} script could not be loaded")

    async def reserve(
        self,
        *,
        publish_id: str,
        tenant_id: str,
        jobs: int,
        reads: int,
        max_depth: int,
        lease_us: int,
        cursor_seen: str,
        cursor_after: int,
    ) -> Admitted | Refused | CursorMoved:
        """Admission (lua/reserve.lua): depth check, reservation and cursor claim, at once."""
        keys = self.keys
        reply = await self._run(
            "reserve",
            [keys.stream, keys.reservations, keys.cursor(tenant_id)],
            [
                CONSUMER_GROUP,
                publish_id,
                jobs,
                reads,
                max_depth,
                lease_us,
                cursor_seen,
                cursor_after,
            ],
        )
        outcome = int(reply[0])
        if outcome == 2:
            return CursorMoved(_text(reply[1]))
        result = Admitted if outcome == 1 else Refused
        return result(waiting=int(reply[1]), delayed=int(reply[2]))

    async def enqueue(
        self,
        *,
        entry: bytes,
        entry_field: bytes,
        reads: int,
        cap: int,
        window_us: int,
        publish_id: str,
        reserved_reads: int,
        lease_us: int,
        settles: bool = True,
    ) -> Enqueued | NotYet:
        """One job, if the shared rate limit admits it now (lua/enqueue.lua). A job written
        again after an unconfirmed write does not settle its reservation a second time
        (``settles``): the publish's remaining jobs are over-counted rather than under."""
        keys = self.keys
        reply = await self._run(
            "enqueue",
            [keys.stream, keys.rate_log, keys.rate_next, keys.reservations, keys.enqueued],
            [
                entry_field,
                entry,
                reads,
                cap,
                window_us,
                publish_id,
                reserved_reads,
                lease_us,
                int(settles),
                RATE_HISTORY_S,
            ],
        )
        return enqueue_outcome(reply)

    async def release(
        self, *, publish_id: str, tenant_id: str, cursor_set: str = "", cursor_back: str = ""
    ) -> None:
        """The end of a publish (lua/release.lua): drop its reservation; after a failure,
        give the tenant's cursor back from ``cursor_set`` to ``cursor_back``."""
        keys = self.keys
        await self._run(
            "release",
            [keys.reservations, keys.cursor(tenant_id)],
            [publish_id, cursor_set, cursor_back],
        )

    async def ack(
        self,
        *,
        entry_ids: Sequence[str | bytes],
        reads_inserted: int,
        ingested_second: str,
        counter_ttl_s: int,
        consumer: str,
        refill: int,
    ) -> Acknowledged:
        """Acknowledge and delete entries, count them, read ``refill`` new entries for
        ``consumer``, and read the depth: one round trip (lua/ack.lua)."""
        keys = self.keys
        reply = await self._run(
            "ack",
            [keys.stream, keys.errors, keys.completed, ingested_second, keys.reservations],
            [CONSUMER_GROUP, counter_ttl_s, reads_inserted, consumer, refill, *entry_ids],
        )
        *depth, fresh = reply
        entries = [
            (entry_id, dict(zip(fields[::2], fields[1::2], strict=True)))
            for entry_id, fields in fresh
        ]
        return Acknowledged(QueueDepth.of(depth), entries)

    async def queue_depth(self) -> QueueDepth:
        """The queue's depth, read in one atomic step (lua/queue_state.lua)."""
        keys = self.keys
        reply = await self._run("queue_state", [keys.stream, keys.reservations], [CONSUMER_GROUP])
        return QueueDepth.of(reply)


def enqueue_outcome(reply: Sequence[Any]) -> Enqueued | NotYet:
    """The named result of lua/enqueue.lua's reply."""
    if int(reply[0]) == 1:
        return Enqueued(entry_id=_text(reply[1]), written_us=int(reply[2]))
    return NotYet(wait_us=int(reply[1]))


async def _node_of(client: RedisClient, key: str) -> Any:
    """The cluster node serving ``key``'s slot; None for a client of one primary."""
    if not isinstance(client, RedisCluster):
        return None
    try:
        await client.initialize()
        return client.get_node_from_key(key)
    except RedisClusterException as error:  # no node covers the slot yet: a failover
        raise ClusterDownError(str(error)) from error


@functools.cache
def _source(name: str) -> str:
    folder = resources.files("gridlens").joinpath("lua")
    return folder.joinpath("depth.lua").read_text() + folder.joinpath(f"{name}.lua").read_text()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
