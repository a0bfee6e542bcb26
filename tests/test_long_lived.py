"""One long-lived API process: no answer depends on the requests served before it.

Every endpoint is called in a shuffled order, 200 rounds, on one application whose
PostgreSQL pool holds a single connection, so any state a handler leaves on a pooled
connection (a row factory, a setting, an open transaction) meets the next request.
Each answer must equal the one a fresh application gives to the same call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiohttp.test_utils import TestClient
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gridlens.connections import postgres_pool
from tests.conftest import TEST_API_KEY, ClientFactory
from tests.test_kpi import ingest, refresh_until_current

ROUNDS = 200
AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
START = datetime(2026, 3, 3, tzinfo=UTC)
# What differs from one call to the next by design: ids, timings, the queue as it fills.
VOLATILE = frozenset(
    {
        "publishId",
        "elapsedSeconds",
        "readsPerSecond",
        "fullestSecondReads",
        "queue",
        "estimatedRuntimeSeconds",
        "id",
        "deleted",
    }
)

Client = TestClient[Any, Any]
Call = Callable[[Client], Awaitable[Any]]


def normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


async def answer(response: Any) -> tuple[int, Any]:
    if response.content_type == "application/json":
        return response.status, normalised(await response.json())
    return response.status, response.content_type  # /metrics: its counters move


def calls(tenant: str) -> dict[str, Call]:
    """Every route, with its success and its error answers."""
    status = f"/api/ami/scale/status?tenantId={tenant}"
    publish = {"tenantId": tenant, "meterCount": 1, "readAt": "2026-03-05T12:00:00Z"}

    async def get(client: Client, path: str, **options: Any) -> tuple[int, Any]:
        return await answer(await client.get(path, **options))

    async def post(client: Client, path: str, body: Any, **options: Any) -> tuple[int, Any]:
        return await answer(await client.post(path, json=body, **options))

    async def event_round_trip(client: Client) -> list[tuple[int, Any]]:
        body = {"tenantId": tenant, "type": "theft", "feederId": "FEEDER_3"}
        created = await client.post(
            "/api/ami/events",
            json={**body, "startsAt": "2026-03-05T00:00:00Z", "durationMinutes": 60},
            headers=AUTH,
        )
        event_id = (await created.json())["event"]["id"]
        deleted = await client.delete(f"/api/ami/events/{event_id}", headers=AUTH)
        return [await answer(created), await answer(deleted)]

    return {
        "healthz": lambda c: get(c, "/healthz"),
        "readyz": lambda c: get(c, "/readyz"),
        "metrics": lambda c: get(c, "/metrics"),
        "openapi": lambda c: get(c, "/api/openapi.json"),
        "status": lambda c: get(c, status),
        "status without tenant": lambda c: get(c, "/api/ami/scale/status"),
        "quickcheck": lambda c: get(c, f"/api/ami/kpi/quickcheck?tenantId={tenant}"),
        "quickcheck of nobody": lambda c: get(c, "/api/ami/kpi/quickcheck?tenantId=NOBODY"),
        "events": lambda c: get(c, f"/api/ami/events?tenantId={tenant}"),
        "event created and deleted": event_round_trip,
        "missing event": lambda c: answer_of(c.delete("/api/ami/events/999999", headers=AUTH)),
        "dry run": lambda c: post(
            c, "/api/ami/publish-once", {**publish, "dryRun": True}, headers=AUTH
        ),
        "publish": lambda c: post(c, "/api/ami/publish-once", publish, headers=AUTH),
        "publish without key": lambda c: post(c, "/api/ami/publish-once", publish),
        "publish with bad body": lambda c: post(
            c, "/api/ami/publish-once", {"tenantId": tenant, "meterCount": "x"}, headers=AUTH
        ),
        "unknown route": lambda c: get(c, "/nowhere"),
    }


async def answer_of(pending: Awaitable[Any]) -> tuple[int, Any]:
    return await answer(await pending)


async def test_every_endpoint_answers_alike_after_200_shuffled_rounds_on_one_connection(
    make_client: ClientFactory,
    pool: AsyncConnectionPool[Any],
    namespace: str,
) -> None:
    tenant = namespace.replace("-", "_")
    await ingest(pool, tenant, meters=40, start=START, intervals=2 * 96, interval_minutes=15)
    await refresh_until_current(pool, tenant)
    routes = calls(tenant)
    fresh: dict[str, Any] = {}
    for name, call in routes.items():  # each from an application of its own
        client = await make_client(api_pool_size=1)
        fresh[name] = await call(client)
        await client.close()
    assert fresh["status"][0] == 200 and fresh["quickcheck"][1]["theftSuspects"]["computed"]

    long_lived = await make_client(api_pool_size=1)
    order = random.Random(13)
    differences: list[str] = []
    for round_number in range(ROUNDS):
        names = list(routes)
        order.shuffle(names)
        for name in names:
            got = await routes[name](long_lived)
            if got != fresh[name]:
                differences.append(f"round {round_number}, {name}: {got} != {fresh[name]}")
    assert differences == []


async def test_the_pool_gives_back_each_connection_as_it_made_it(database_url: str) -> None:
    async with postgres_pool(database_url, max_size=1, statement_timeout_s=7.0) as pool:
        async with pool.connection() as conn:
            conn.row_factory = dict_row
            await conn.set_autocommit(True)
            await conn.execute(b"SET work_mem = '77MB'")
            await conn.execute(b"SET TIME ZONE 'Asia/Kolkata'")
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    b"SELECT current_setting('work_mem') <> '77MB',"
                    b" current_setting('TimeZone') <> 'Asia/Kolkata',"
                    b" current_setting('statement_timeout')"
                )
            ).fetchone()
            assert row == (True, True, "7s")  # a tuple: the row factory is back
            assert conn.autocommit is False
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS


async def test_a_burst_of_concurrent_requests_waits_for_connections_rather_than_failing(
    make_client: ClientFactory, namespace: str
) -> None:
    """Each status call uses several Redis connections at once; a burst needs more than
    the client's 32 and more than the pool's one PostgreSQL connection."""
    client = await make_client(api_pool_size=1)
    path = f"/api/ami/scale/status?tenantId={namespace.replace('-', '_')}"
    answers = await asyncio.gather(*(client.get(path) for _ in range(100)))
    assert [response.status for response in answers] == [200] * 100
