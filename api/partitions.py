"""The API's partition pass: read partitions ahead of the data, and retention.

Every PASS_EVERY_S each API process runs a pass; one process at a time does the work
(the creation function's advisory lock, and DROP's lock on the table). A pass creates
the partitions of the days ahead (gridlens/partitions.py) and, with
GRIDLENS_RETENTION_DAYS set, drops the days wholly older than the window.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from api.background import every
from gridlens.partitions import ensure_partitions, prune

PASS_EVERY_S: Final = 300.0


def background_partitions(retention_days: int | None, pool_of: Any) -> Any:
    """A cleanup context running the partition pass while the app runs."""

    async def one_pass(pool: AsyncConnectionPool[Any]) -> None:
        await ensure_partitions(pool)
        if retention_days is not None:
            await prune(pool, retention_days)

    return every(lambda: PASS_EVERY_S, "partition_pass", one_pass, pool_of)
