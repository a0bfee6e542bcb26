"""POST, GET and DELETE /api/ami/events over real PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from gridlens.settings import Settings
from producer.event_store import active_events
from tests.conftest import TEST_API_KEY

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


def theft(tenant: str, **changes: Any) -> dict[str, Any]:
    return {
        "tenantId": tenant,
        "type": "theft",
        "feederId": "FEEDER_2",
        "startsAt": "2026-03-04T12:00:00Z",
        "endsAt": "2026-03-05T12:00:00Z",
        "pattern": "h3",
        "fraction": 0.2,
        **changes,
    }


async def test_events_are_created_listed_and_deleted(
    client: TestClient[Any, Any], tenant: str, pool: AsyncConnectionPool[Any]
) -> None:
    created = await client.post("/api/ami/events", json=theft(tenant), headers=AUTH)
    assert created.status == 201
    event = (await created.json())["event"]
    assert event == {
        "id": event["id"],
        "tenantId": tenant,
        "type": "theft",
        "feederId": "FEEDER_2",
        "startsAt": "2026-03-04T12:00:00Z",
        "endsAt": "2026-03-05T12:00:00Z",
        "fraction": 0.2,
        "pattern": "h3",
    }
    listed = await (await client.get(f"/api/ami/events?tenantId={tenant}")).json()
    assert listed == {"ok": True, "tenantId": tenant, "events": [event]}

    # What the producer reads at the next publish, from any process.
    inside = datetime(2026, 3, 4, 18, 0, tzinfo=UTC)
    active = await active_events(pool, tenant, inside)
    assert [(e.event_id, e.params["pattern"]) for e in active] == [(event["id"], "h3")]
    # Reads end their interval: the read at endsAt is the window's last, at startsAt not in it.
    assert len(await active_events(pool, tenant, datetime(2026, 3, 5, 12, tzinfo=UTC))) == 1
    assert await active_events(pool, tenant, datetime(2026, 3, 5, 12, 15, tzinfo=UTC)) == []
    assert await active_events(pool, tenant, datetime(2026, 3, 4, 12, tzinfo=UTC)) == []

    deleted = await client.delete(f"/api/ami/events/{event['id']}", headers=AUTH)
    assert await deleted.json() == {"ok": True, "deleted": event["id"]}
    assert await active_events(pool, tenant, inside) == []
    again = await client.delete(f"/api/ami/events/{event['id']}", headers=AUTH)
    assert again.status == 404


async def test_an_invalid_event_is_400_and_nothing_is_stored(
    client: TestClient[Any, Any], tenant: str
) -> None:
    response = await client.post("/api/ami/events", json=theft(tenant, fraction=2), headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"] == "fraction must be in (0, 1], not 2"
    listed = await (await client.get(f"/api/ami/events?tenantId={tenant}")).json()
    assert listed["events"] == []


async def test_mutations_need_the_key(client: TestClient[Any, Any], tenant: str) -> None:
    assert (await client.post("/api/ami/events", json=theft(tenant))).status == 401
    assert (await client.delete("/api/ami/events/1")).status == 401


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/ami/events", 400, "tenantId query parameter is required"),
        ("/api/ami/events?tenantId=a-b", 400, "tenantId must match"),
    ],
)
async def test_listing_needs_a_valid_tenant(
    client: TestClient[Any, Any], path: str, status: int, error: str
) -> None:
    response = await client.get(path)
    assert response.status == status
    assert (await response.json())["error"].startswith(error)


async def test_a_bad_event_id_is_400(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/api/ami/events/abc", headers=AUTH)
    assert response.status == 400


async def test_postgres_down_is_503_naming_it(settings: Settings, tenant: str) -> None:
    app = create_app(dataclasses.replace(settings, database_url="postgresql://x@127.0.0.1:1/x"))
    async with TestClient(TestServer(app)) as down:
        response = await down.get(f"/api/ami/events?tenantId={tenant}")
        assert response.status == 503
        assert "PostgreSQL" in (await response.json())["error"]
