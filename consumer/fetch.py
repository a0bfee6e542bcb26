"""Where a consumer's jobs come from: its own pending entries, new ones, claimed ones.

On start a consumer first reads its own pending entries (cursor "0": left by an
earlier run under the same name), then new ones (">"). Every claim_idle_ms / 2 it
takes over entries idle for claim_idle_ms on any consumer, a dead one (XAUTOCLAIM).
It fetches only as many as it has free slots, so entries are not held back from
other consumers (nor left for XAUTOCLAIM if this process dies) while they wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from consumer import metrics
from consumer.slots import Job
from gridlens.connections import RedisClient
from gridlens.entry import ENTRY_FIELD
from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.queue import ensure_group, missing_group

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1_000  # how long one XREADGROUP waits for new entries

Entry = tuple[bytes, dict[bytes, bytes] | None]


class Fetcher:
    def __init__(self, client: RedisClient, keys: Keys, consumer: str, claim_idle_ms: int) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.cursor = "0"  # this consumer's own pending entries first, then ">": new ones
        self._next_claim = 0.0

    @property
    def reading_new(self) -> bool:
        """Past its own pending entries, with no claim due: new entries are next."""
        return self.cursor == ">" and time.monotonic() < self._next_claim

    async def fetch(self, count: int, in_flight: int) -> list[Job]:
        """Up to ``count`` jobs: claimed ones when a claim is due, else own or new ones.

        A missing group (a new primary that never had it) is created again, from id 0: every
        entry there is read, and one that was ingested already inserts nothing.
        """
        try:
            return await self._fetch(count, in_flight)
        except ResponseError as error:
            if not missing_group(error):
                raise
        await ensure_group(self.client, self.keys)
        log.warning(
            "consumer group missing; created again",
            extra={"action": "group_recreated", "consumer": self.consumer},
        )
        return []

    async def _fetch(self, count: int, in_flight: int) -> list[Job]:
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2_000
            claimed = await self.jobs(
                await self._claim(count), known_new=False, in_flight=in_flight
            )
            if claimed:
                return claimed
        entries = await self._read(count)
        jobs = await self.jobs(entries, known_new=self.cursor == ">", in_flight=in_flight)
        if self.cursor != ">":
            self.cursor = entries[-1][0].decode() if entries else ">"
        return jobs

    async def _read(self, count: int) -> list[Entry]:
        reply: Any = await self.client.xreadgroup(
            CONSUMER_GROUP,
            self.consumer,
            {self.keys.stream: self.cursor},
            count=count,
            block=READ_BLOCK_MS if self.cursor == ">" else None,
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
            self.consumer,
            self.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        claimed = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id is not None]
        if claimed:
            metrics.CLAIMS.inc(len(claimed))
            log.info("claimed idle entries", extra={"action": "claim", "claimed": len(claimed)})
        return claimed

    async def jobs(self, entries: Sequence[Entry], *, known_new: bool, in_flight: int) -> list[Job]:
        """Jobs for entries, with how often each has been delivered (1 for new ones)."""
        if not entries:
            return []
        deliveries: dict[str, int] = {}
        if not known_new:
            pending: Any = await self.client.xpending_range(
                self.keys.stream,
                CONSUMER_GROUP,
                min=entries[0][0],
                max=entries[-1][0],
                count=len(entries) + in_flight,
                consumername=self.consumer,
            )
            deliveries = {_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        return [
            Job(
                _text(entry_id), (fields or {}).get(ENTRY_FIELD), deliveries.get(_text(entry_id), 1)
            )
            for entry_id, fields in entries
        ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
