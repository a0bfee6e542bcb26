"""Connections to Redis and PostgreSQL, their health checks, and one-line errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from gridlens.errors import first_line
from gridlens.failover import Unconfirmed
from gridlens.redis_url import RedisMode, RedisTarget, parse_redis_url
from gridlens.settings import redact_url
from gridlens.sqlfiles import query

CHECK_TIMEOUT_S = 3.0
# No reply within this much is a dead or cut-off server, not a slow one. It is longer than
# any blocking read (the consumer's XREADGROUP blocks 1 s), so such a read never hangs on a
# node that went away without closing its connections.
SOCKET_TIMEOUT_S = 5.0

CONNECT_TIMEOUT_S = 5  # PostgreSQL, when DATABASE_URL sets no connect_timeout

RedisClient = aioredis.Redis | aioredis.RedisCluster


def redis_client(url: str, *, max_connections: int = 32) -> RedisClient:
    """An asyncio Redis client for any form of REDIS_URL (gridlens/redis_url.py); bytes in,
    bytes out; TLS for the rediss schemes.

    When all ``max_connections`` are busy, a command waits up to CHECK_TIMEOUT_S for one
    to come free (then ConnectionError, a 503): a burst of requests queues, it does not fail.
    A cluster client has no such wait: past ``max_connections`` to one node it fails at once.
    """
    target = parse_redis_url(url)
    options: dict[str, Any] = {
        "socket_connect_timeout": CHECK_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": 30,
    }
    if target.mode is RedisMode.CLUSTER:
        return _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            max_connections=max_connections,
            **options,
        )
    if target.mode is RedisMode.SENTINEL:
        return _sentinel_client(target, max_connections, options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=CHECK_TIMEOUT_S, **options
    )
    return aioredis.Redis.from_pool(pool)


class _Cluster(aioredis.RedisCluster):
    """A cluster client whose failures are all RedisErrors, as a single server's are.

    redis-py raises a few cluster errors outside that family (a slot no node covers yet,
    while a failover is under way; no node to send a command to): they come out as
    CLUSTERDOWN, which callers already take for a failover to ride out.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except redis_errors.RedisClusterException as error:
            raise redis_errors.ClusterDownError(str(error)) from error


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Connections to the primary the sentinels name, waiting for a free one as the
    single-server pool does. A connection finds the primary when it connects, and drops
    itself when its server answers READONLY (a demoted primary)."""


class _SentinelManagedRedis(aioredis.Redis):
    """The primary's client; closing it also closes its connections to the sentinels."""

    sentinels: Sentinel | None = None  # the manager that finds the primary

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def _sentinel_client(
    target: RedisTarget, max_connections: int, options: dict[str, Any]
) -> aioredis.Redis:
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8
        list(target.hosts),
        sentinel_kwargs={
            "password": target.sentinel_password,
            "ssl": target.tls,
            "socket_connect_timeout": CHECK_TIMEOUT_S,
            "socket_timeout": CHECK_TIMEOUT_S,
        },
    )
    client = sentinel.master_for(
        target.service,
        redis_class=_SentinelManagedRedis,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=CHECK_TIMEOUT_S,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **options,
    )
    assert isinstance(client, _SentinelManagedRedis)
    client.sentinels = sentinel
    return client


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
    kwargs: dict[str, Any] = {"options": options, "application_name": name}
    if "connect_timeout" not in conninfo_to_dict(url):
        # Per host: with several hosts, a dead first one costs this much per new connection.
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={**kwargs, "autocommit": autocommit},
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


async def check_redis(client: RedisClient) -> None:
    await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_S)


@dataclass(frozen=True)
class PrimaryReplication:
    """The primary serving a key, as it reports itself."""

    run_id: str  # changes when another server serves the key, or the server restarted
    connected_replicas: int


async def primary_replication(client: RedisClient, key: str) -> PrimaryReplication:
    """INFO server and replication of the primary that serves ``key`` (on a cluster, the
    primary of its slot)."""
    options: dict[str, Any] = {}
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()
        try:
            options["target_nodes"] = client.get_node_from_key(key)
        except redis_errors.RedisClusterException as error:
            raise redis_errors.ClusterDownError(str(error)) from error
    server = _one_node(await client.info("server", **options))
    replication = _one_node(await client.info("replication", **options))
    return PrimaryReplication(
        run_id=str(server.get("run_id", "")),
        connected_replicas=int(replication.get("connected_slaves", 0)),
    )


def _one_node(info: Any) -> dict[str, Any]:
    """An INFO reply; a cluster client may key it by the one node it asked."""
    if isinstance(info, dict) and len(info) == 1:
        (only,) = info.values()
        if isinstance(only, dict):
            return only
    return dict(info)


async def check_postgres(pool: AsyncConnectionPool[Any]) -> None:
    async def ping() -> None:
        async with pool.connection() as conn:
            await conn.execute(query("ping"))

    await asyncio.wait_for(ping(), CHECK_TIMEOUT_S)


def describe_redis_error(error: BaseException, url: str) -> str:
    where = redact_url(url)
    if isinstance(error, Unconfirmed):
        return f"Redis at {where}: {error}"
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
