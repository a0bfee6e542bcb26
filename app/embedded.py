"""Embedded PostgreSQL and Redis, kept under the data dir (SPEC §2).

Used when DATABASE_URL / REDIS_URL are unset, so that a machine with only Python
runs the whole stack. Each server is owned by whichever process holds its lock
file: the owner starts it (or adopts one left running by a crashed owner), can
start it again from its own data if it dies (``alive``/``restart``, which
``gridlens up`` watches), and stops it; any other process finds it running and
only connects. One module per server (``embedded_postgresql``, ``embedded_redis``);
this one decides which servers a process uses.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.embedded_base import free_port
from app.embedded_postgresql import EmbeddedPostgres
from app.embedded_redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "ServiceUrls", "free_port", "running_services"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    # The embedded servers this process owns: ``gridlens up`` restarts them if they die.
    owned: tuple[EmbeddedPostgres | EmbeddedRedis, ...] = ()


@contextlib.contextmanager
def running_services(
    data_dir: Path, database_url: str | None, redis_url: str | None
) -> Iterator[ServiceUrls]:
    """The URLs to use: the configured ones, or those of embedded servers started here.

    Embedded servers that this call started are stopped when it exits.
    """
    postgres = EmbeddedPostgres(data_dir) if database_url is None else None
    embedded_redis = EmbeddedRedis(data_dir) if redis_url is None else None
    try:
        yield ServiceUrls(
            database_url=postgres.start() if postgres else str(database_url),
            redis_url=embedded_redis.start() if embedded_redis else str(redis_url),
            # after the starts above, which take the servers' locks
            owned=tuple(server for server in (postgres, embedded_redis) if server and server.owner),
        )
    finally:
        for server in (embedded_redis, postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    log.exception(
                        "could not stop an embedded server", extra={"action": "embedded_stop"}
                    )
