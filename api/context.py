"""What every handler shares: settings, keys, and the Redis and PostgreSQL clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from gridlens.connections import RedisClient, postgres_pool, redis_client
from gridlens.keys import Keys
from gridlens.settings import Settings
from producer.publisher import Publisher

BACKGROUND_POOL_SIZE: Final = 2  # the KPI refresh and the partition pass, one each
BACKGROUND_TIMEOUT_S: Final = 600.0  # a pass's statement, at most (one day's refresh)


@dataclass
class ApiContext:
    settings: Settings
    keys: Keys
    redis: RedisClient
    pool: AsyncConnectionPool[Any]
    # The background passes' own connections (api/background.py), so that a long pass never
    # leaves requests without one.
    background_pool: AsyncConnectionPool[Any]
    publisher: Publisher
    # Publishes run as tasks of their own: a client that disconnects does not stop one,
    # and shutdown waits for them.
    publishes: set[asyncio.Task[Any]] = field(default_factory=set)
    shutdown_deadline: float = float("inf")  # monotonic; set when shutdown begins


CONTEXT: web.AppKey[ApiContext] = web.AppKey("gridlens", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def connections(settings: Settings) -> Any:
    """A cleanup context: clients opened at start-up, closed at shutdown.

    Neither waits for its server, so the API starts (and /readyz says what is
    down) even while Redis or PostgreSQL is unreachable. At shutdown, publishes whose
    client went away (the server no longer waits for them) finish within what is left of
    the grace period.
    """

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = postgres_pool(
            settings.resolved_database_url,
            min_size=1,
            max_size=settings.api_pool_size,
            statement_timeout_s=10.0,
            name="gridlens-api",
        )
        await pool.open(wait=False)
        background_pool = postgres_pool(
            settings.resolved_database_url,
            min_size=0,
            max_size=BACKGROUND_POOL_SIZE,
            statement_timeout_s=BACKGROUND_TIMEOUT_S,
            name="gridlens-api-background",
        )
        await background_pool.open(wait=False)
        client = redis_client(settings.resolved_redis_url)
        keys = Keys(settings.redis_namespace)
        ctx = ApiContext(
            settings=settings,
            keys=keys,
            redis=client,
            pool=pool,
            background_pool=background_pool,
            publisher=Publisher(
                client,
                keys,
                settings.caps,
                min_replicas=settings.redis_min_replicas,
                failover_timeout_s=settings.failover_timeout_s,
            ),
        )
        app[CONTEXT] = ctx
        yield
        if ctx.publishes:
            left_s = ctx.shutdown_deadline - time.monotonic()
            await asyncio.wait(ctx.publishes, timeout=max(0.0, left_s))
        await client.aclose()
        await pool.close()
        await background_pool.close()

    return lifecycle


async def shutdown_begins(app: web.Application) -> None:
    """An on_shutdown handler: the grace period starts now."""
    ctx = app[CONTEXT]
    ctx.shutdown_deadline = time.monotonic() + ctx.settings.shutdown_grace_s
