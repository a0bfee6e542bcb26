"""A buffered comms outage end to end: the gap while it lasts, then the fill, late, through
the API's paced publish → stream → consumer → table → completeness and status; nothing
doubled, also when the interval after it is published twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from psycopg_pool import AsyncConnectionPool

from producer.backlog import missed_read_times
from producer.events import Event, EventType, members
from producer.fleet import feeder_meters
from producer.randomness import text_seed
from tests.conftest import TEST_API_KEY

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
START = datetime(2026, 3, 2, 10, tzinfo=UTC)
METERS, FEEDERS = 200, 10


async def publish(
    client: TestClient[Any, Any], tenant: str, read_at: datetime, dry_run: bool = False
) -> Any:
    body = {
        "dryRun": dry_run,
        "tenantId": tenant,
        "meterCount": METERS,
        "feederCount": FEEDERS,
        "readAt": read_at.isoformat(),
        "pvShare": 0,
        "evShare": 0,
    }
    response = await client.post("/api/ami/publish-once", json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    return await response.json()


async def rows_when(pool: AsyncConnectionPool[Any], tenant: str, count: int) -> list[Any]:
    """(meter, read_at, late) of the tenant's rows, once there are ``count`` of them."""
    for _ in range(300):
        async with pool.connection() as conn:
            cursor = await conn.execute(
                b"SELECT meter_id, read_at, late FROM meter_reads_electric WHERE tenant_id = %s",
                [tenant],
            )
            rows = await cursor.fetchall()
        if len(rows) >= count:
            return list(rows)
        await asyncio.sleep(0.05)
    pytest.fail(f"{len(rows)} rows stored, never {count}")


async def drained(client: TestClient[Any, Any], tenant: str) -> Any:
    """Status once the queue holds nothing waiting, in flight or being published."""
    for _ in range(300):
        status = await (await client.get(f"/api/ami/scale/status?tenantId={tenant}")).json()
        queue = status["queue"]
        if queue["waiting"] == queue["active"] == queue["delayed"] == 0:
            return status
        await asyncio.sleep(0.05)
    pytest.fail(f"the queue never drained: {status}")


async def test_a_buffered_outage_leaves_a_gap_then_fills_it_late_and_once(
    client: TestClient[Any, Any],
    consumer: None,
    pool: AsyncConnectionPool[Any],
    tenant: str,
) -> None:
    created = await client.post(
        "/api/ami/events",
        json={
            "tenantId": tenant,
            "type": "comms-outage",
            "buffered": True,
            "feederId": "FEEDER_3",
            "startsAt": (START + timedelta(minutes=15)).isoformat(),
            "durationMinutes": 45,  # the reads ending at 10:30, 10:45 and 11:00
            "fraction": 0.5,
        },
        headers=AUTH,
    )
    assert created.status == 201, await created.text()
    event = (await created.json())["event"]
    outage = Event(
        event_id=event["id"],
        tenant_id=tenant,
        event_type=EventType.COMMS_OUTAGE,
        feeder_id="FEEDER_3",
        starts_at=START + timedelta(minutes=15),
        ends_at=START + timedelta(minutes=60),
        fraction=0.5,
    )
    numbers = feeder_meters(3, 1, METERS, FEEDERS)
    out = len(numbers[members(text_seed(tenant), outage, numbers)])
    assert out >= 3
    missed = missed_read_times(outage, 15)
    assert [t.strftime("%H:%M") for t in missed] == ["10:30", "10:45", "11:00"]

    reads = [START + timedelta(minutes=15 * step) for step in range(1, 5)]  # to 11:00
    for read_at in reads:
        answer = await publish(client, tenant, read_at)
        assert answer["lateReads"] == 0
    gap = 4 * METERS - 3 * out
    rows = await rows_when(pool, tenant, gap)
    assert len(rows) == gap and not any(late for *_, late in rows)  # the gap
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT read_at, reads_received FROM kpi_read_completeness"
            b" WHERE tenant_id = %s ORDER BY read_at",
            [tenant],
        )
        assert [row[1] for row in await cursor.fetchall()] == [METERS] + [METERS - out] * 3

    after = START + timedelta(minutes=75)  # 11:15, the first read after the outage
    plan = await publish(client, tenant, after, dry_run=True)
    assert plan["estimatedLateReads"] == 3 * out and plan["estimatedJobs"] == 10 + 3
    answer = await publish(client, tenant, after)
    assert answer["lateReads"] == 3 * out and answer["reads"] == METERS
    again = await publish(client, tenant, after)  # a retry of the same interval
    assert again["lateReads"] == 3 * out
    status = await drained(client, tenant)  # both publishes' entries ingested
    assert status["totalReads"] == 5 * METERS and status["lateReads"] == 3 * out  # once
    assert status["lateSecondsMax"] > 0
    rows = await rows_when(pool, tenant, 5 * METERS)
    assert len(rows) == 5 * METERS
    late = [(meter, at) for meter, at, is_late in rows if is_late]
    assert len(late) == 3 * out and {at for _, at in late} == set(missed)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT reads_received FROM kpi_read_completeness"
            b" WHERE tenant_id = %s ORDER BY read_at",
            [tenant],
        )
        assert [row[0] for row in await cursor.fetchall()] == [METERS] * 5  # the fill
