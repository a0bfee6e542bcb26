"""Every Redis key of a deployment, defined in one place.

Each key carries the same hash tag (``{namespace}``) so that the stream and the
Lua scripts that touch several keys also work on Redis Cluster (SPEC §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CONSUMER_GROUP: Final = "ingest"


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
