"""Every Redis key of a deployment, defined in one place.

Each key carries the same hash tag (``{namespace}``) so that the stream and the
Lua scripts that touch several keys also work on Redis Cluster (SPEC §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CONSUMER_GROUP: Final = "ingest"
# How long the per-second counters of reads enqueued and ingested, and of publishes
# refused, are kept: the live page's 10 minutes, and a minute to spare.
RATE_HISTORY_S: Final = 660


@dataclass(frozen=True)
class Keys:
    namespace: str = "gridlens"

    @property
    def _tag(self) -> str:
        return "{" + self.namespace + "}"

    @property
    def stream(self) -> str:
        """The Redis Stream of read batches, one entry per job."""
        return f"{self._tag}:ami:reads"

    @property
    def dead_letters(self) -> str:
        """Entries that could not be ingested, each with its error."""
        return f"{self._tag}:ami:dead"

    @property
    def reservations(self) -> str:
        """Jobs accepted by publishes in progress, not yet written: "delayed"."""
        return f"{self._tag}:ami:reservations"

    @property
    def rate_log(self) -> str:
        """Reads enqueued in the last second, by server time: the shared rate limiter."""
        return f"{self._tag}:ami:rate"

    @property
    def rate_next(self) -> str:
        """Server time (µs) before which no further job may be enqueued (even pacing)."""
        return f"{self._tag}:ami:rate:next"

    def cursor(self, tenant_id: str) -> str:
        """The first meter of the tenant's next publish, after a truncated one."""
        return f"{self._tag}:ami:cursor:{tenant_id}"

    @property
    def completed(self) -> str:
        """Count of jobs acknowledged (their entries are deleted from the stream)."""
        return f"{self._tag}:ami:completed"

    @property
    def enqueued(self) -> str:
        """Reads enqueued by second of the Redis server's clock (hash: unix second -> reads),
        kept RATE_HISTORY_S."""
        return f"{self._tag}:ami:enqueued"

    def ingested_second(self, unix_second: int) -> str:
        """Reads inserted during one second (the consumer's clock), kept RATE_HISTORY_S."""
        return f"{self._tag}:ami:ingested:{unix_second}"

    def refused_second(self, unix_second: int) -> str:
        """Publishes refused with 429 during one second (the API's clock), kept
        RATE_HISTORY_S."""
        return f"{self._tag}:ami:refused:{unix_second}"

    @property
    def consumers(self) -> str:
        """Heartbeats of live consumer processes: name -> "in-flight limit:unix ms"."""
        return f"{self._tag}:ami:consumers"

    @property
    def errors(self) -> str:
        """The last error of each entry that failed and awaits redelivery."""
        return f"{self._tag}:ami:errors"
