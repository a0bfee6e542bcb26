"""Real servers for the tests: embedded by default, or those of DATABASE_URL / REDIS_URL.

Isolation: one fresh database per test run (migrated once), one Redis key
namespace per test (its keys deleted afterwards).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from app.embedded import running_services
from app.migrate import migrate
from consumer.limit import AdaptiveLimit
from consumer.worker import Consumer
from gridlens.connections import RedisClient, postgres_pool, redis_client
from gridlens.settings import Settings

TEST_API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Tests that run the CLI's main() configure logging; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass(frozen=True)
class Servers:
    admin_database_url: str  # a database of the server we may create databases from
    redis_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    database_url = os.environ.get("DATABASE_URL") or None
    redis_url = os.environ.get("REDIS_URL") or None
    with running_services(tmp_path_factory.mktemp("servers"), database_url, redis_url) as urls:
        yield Servers(admin_database_url=urls.database_url, redis_url=urls.redis_url)


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A fresh database for this test run, migrated."""
    url = create_database(servers.admin_database_url)
    asyncio.run(migrate(url))
    try:
        yield url
    finally:
        drop_database(servers.admin_database_url, url)


def create_database(admin_url: str) -> str:
    name = f"gridlens_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(b"CREATE DATABASE " + name.encode())
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(b"DROP DATABASE IF EXISTS " + str(name).encode() + b" WITH (FORCE)")


@pytest.fixture
def fresh_database_url(servers: Servers) -> Iterator[str]:
    """An empty database of its own, for tests of migrations themselves."""
    url = create_database(servers.admin_database_url)
    try:
        yield url
    finally:
        drop_database(servers.admin_database_url, url)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_url: str, servers: Servers, namespace: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=servers.redis_url,
        api_key=TEST_API_KEY,
        data_dir=tmp_path,
        redis_namespace=namespace,
        shutdown_grace_s=5.0,
    )


@pytest.fixture
async def redis(servers: Servers, namespace: str) -> AsyncIterator[RedisClient]:
    client = redis_client(servers.redis_url)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match="{" + namespace + "}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def client(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[TestClient[Any, Any]]:
    """The API application of this test's settings, served on a free port. It asks for
    ``redis`` so that whatever the application wrote under this test's namespace is
    deleted after it closes, even by a test that never looks at Redis itself."""
    app = create_app(settings)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


ClientFactory = Callable[..., Coroutine[Any, Any, TestClient[Any, Any]]]


@pytest.fixture
async def make_client(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[ClientFactory]:
    """Applications of this test's settings with ``changes``, each served on a free port;
    closed after the test."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(**changes: Any) -> TestClient[Any, Any]:
        app = create_app(dataclasses.replace(settings, **changes))
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    connection_pool = postgres_pool(database_url, max_size=4)
    await connection_pool.open()
    try:
        yield connection_pool
    finally:
        await connection_pool.close()


@pytest.fixture
def tenant(namespace: str) -> str:
    """A tenant id of the test's own (the namespace, as a tenant id may spell it)."""
    return namespace.replace("-", "_")


@pytest.fixture
async def consumer(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[None]:
    """A consumer ingesting the test's stream while the test runs, on a pool of its own as
    in `gridlens consume`: a consumer keeps up to its in-flight limit of connections between
    jobs, which would leave a smaller pool shared with the test none to query with."""
    stop = asyncio.Event()
    consumer_pool = postgres_pool(
        settings.resolved_database_url, max_size=AdaptiveLimit.maximum, autocommit=True
    )
    await consumer_pool.open()
    task = asyncio.create_task(Consumer(settings, redis, consumer_pool).run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await consumer_pool.close()
