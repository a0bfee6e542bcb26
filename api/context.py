"""What every handler shares: settings, keys, and the Redis and PostgreSQL clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from gridlens.connections import postgres_pool, redis_client
from gridlens.keys import Keys
from gridlens.settings import Settings
from producer.publisher import Publisher

PUBLISH_DRAIN_S = 60.0  # at shutdown, publishes in progress finish within this


@dataclass
class ApiContext:
    settings: Settings
    keys: Keys
    redis: aioredis.Redis
    pool: AsyncConnectionPool[Any]
    database_url: str
    redis_url: str
    publisher: Publisher
    # Publishes run as tasks of their own: a client that disconnects does not stop one,
    # and shutdown waits for them.
    publishes: set[asyncio.Task[Any]] = field(default_factory=set)


CONTEXT: web.AppKey[ApiContext] = web.AppKey("gridlens", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def connections(settings: Settings, database_url: str, redis_url: str) -> Any:
    """A cleanup context: clients opened at start-up, closed at shutdown.

    Neither waits for its server, so the API starts (and /readyz says what is
    down) even while Redis or PostgreSQL is unreachable.
    """

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        pool = postgres_pool(
            database_url,
            min_size=1,
            max_size=settings.api_pool_size,
            statement_timeout_s=10.0,
            name="gridlens-api",
        )
        await pool.open(wait=False)
        client = redis_client(redis_url)
        keys = Keys(settings.redis_namespace)
        ctx = ApiContext(
            settings=settings,
            keys=keys,
            redis=client,
            pool=pool,
            database_url=database_url,
            redis_url=redis_url,
            publisher=Publisher(client, keys, settings.caps),
        )
        app[CONTEXT] = ctx
        yield
        if ctx.publishes:
            await asyncio.wait(ctx.publishes, timeout=PUBLISH_DRAIN_S)
        await client.aclose()
        await pool.close()

    return lifecycle
