"""Connections to Redis and PostgreSQL, their health checks, and one-line errors."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool
from redis import exceptions as redis_errors

from gridlens.errors import first_line
from gridlens.settings import redact_url
from gridlens.sqlfiles import query

CHECK_TIMEOUT_S = 3.0


def redis_client(url: str, *, max_connections: int = 32) -> aioredis.Redis:
    """An asyncio Redis client; bytes in, bytes out. rediss:// URLs use TLS.

    When all ``max_connections`` are busy, a command waits up to CHECK_TIMEOUT_S for one
    to come free (then ConnectionError, a 503): a burst of requests queues, it does not fail.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=CHECK_TIMEOUT_S,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def postgres_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    statement_timeout_s: float | None = None,
    name: str = "gridlens",
    autocommit: bool = False,
) -> AsyncConnectionPool[Any]:
    """A connection pool, not yet opened; a statement_timeout bounds every statement.

    ``autocommit``: each statement is its own transaction (no BEGIN/COMMIT round trips),
    for callers whose every unit of work is one statement.

    A connection comes back from every borrower as the pool made it: the pool resets
    its row factory, autocommit and session settings (``RESET ALL`` keeps the startup
    options, so the statement_timeout stays) before lending it again.
    """
    options = (
        f"-c statement_timeout={int(statement_timeout_s * 1000)}" if statement_timeout_s else ""
    )
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "options": options,
            "application_name": name,
            "connect_timeout": 5,
            "autocommit": autocommit,
        },
        open=False,
        timeout=CHECK_TIMEOUT_S,
        name=name,
        reset=_session_reset(autocommit),
    )


def _session_reset(autocommit: bool) -> Any:
    """The pool's reset hook: undo what a borrower may have changed on a connection."""

    async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
        conn.row_factory = tuple_row
        if conn.autocommit != autocommit:
            await conn.set_autocommit(autocommit)
        async with conn.transaction():
            await conn.execute(query("reset_session"))

    return reset


async def check_redis(client: aioredis.Redis) -> None:
    await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_S)


async def check_postgres(pool: AsyncConnectionPool[Any]) -> None:
    async def ping() -> None:
        async with pool.connection() as conn:
            await conn.execute(query("ping"))

    await asyncio.wait_for(ping(), CHECK_TIMEOUT_S)


def describe_redis_error(error: BaseException, url: str) -> str:
    where = redact_url(url)
    if (
        isinstance(error, redis_errors.AuthenticationError)
        or "WRONGPASS" in str(error)
        or ("NOAUTH" in str(error))
    ):
        return f"Redis authentication failed at {where}: check the password in REDIS_URL ({error})"
    if isinstance(error, TimeoutError | asyncio.TimeoutError | redis_errors.TimeoutError):
        return f"Redis did not answer within {CHECK_TIMEOUT_S:.0f} s at {where}"
    if "No connection available" in str(error):
        return (
            f"no Redis connection came free within {CHECK_TIMEOUT_S:.0f} s: the API is overloaded"
        )
    return f"Redis is unreachable at {where}: {error}"


def describe_postgres_error(error: BaseException, url: str) -> str:
    where = redact_url(url)
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return f"PostgreSQL did not answer within {CHECK_TIMEOUT_S:.0f} s at {where}"
    message = first_line(error)
    if isinstance(error, psycopg.OperationalError) and "password" in message:
        return f"PostgreSQL authentication failed at {where}: {message}"
    return f"PostgreSQL is unreachable at {where}: {message}"


async def verify_services(database_url: str, redis_url: str) -> list[str]:
    """One line per unreachable service; empty when both answer."""
    problems: list[str] = []
    client = redis_client(redis_url, max_connections=1)
    try:
        await check_redis(client)
    except Exception as error:
        problems.append(describe_redis_error(error, redis_url))
    finally:
        await client.aclose()
    try:
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(database_url, connect_timeout=int(CHECK_TIMEOUT_S)),
            CHECK_TIMEOUT_S * 2,
        )
        await conn.close()
    except Exception as error:
        problems.append(describe_postgres_error(error, database_url))
    return problems
