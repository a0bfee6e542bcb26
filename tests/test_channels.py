"""Delivered and received kWh end to end: publish through the API → stream → consumer →
public.meter_reads_electric → status → quickcheck, over real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from psycopg_pool import AsyncConnectionPool

from gridlens.entry import ENTRY_FIELD, decode, encode
from gridlens.keys import Keys
from gridlens.queue import ensure_group
from gridlens.settings import Settings
from producer.batch import generate_batch
from producer.diversity import FleetMix
from producer.fleet import feeder_meters
from tests.conftest import TEST_API_KEY
from tests.test_consumer import feeder_batch

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
NOON = datetime(2026, 6, 15, 12, 15, tzinfo=UTC)  # midsummer midday: PV exports
METERS, FEEDERS = 500, 10


async def stored(pool: AsyncConnectionPool[Any], tenant: str) -> dict[str, tuple[float, float]]:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT meter_id, kwh, kwh_received FROM meter_reads_electric WHERE tenant_id = %s",
            [tenant],
        )
        return {meter: (kwh, received) for meter, kwh, received in await cursor.fetchall()}


async def status_when_stored(client: TestClient[Any, Any], tenant: str, reads: int) -> Any:
    for _ in range(200):
        report = await (await client.get(f"/api/ami/scale/status?tenantId={tenant}")).json()
        if report["totalReads"] == reads:
            return report
        await asyncio.sleep(0.05)
    pytest.fail(f"status never reached {reads} reads: {report}")


async def test_delivered_and_received_travel_from_publish_to_quickcheck(
    client: TestClient[Any, Any],
    consumer: None,
    redis: aioredis.Redis,
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    tenant: str,
) -> None:
    body = {
        "tenantId": tenant,
        "meterCount": METERS,
        "feederCount": FEEDERS,
        "readAt": NOON.isoformat(),
        "pvShare": 0.5,
        "evShare": 0.25,
        "dryRun": True,
    }
    plan = await (await client.post("/api/ami/publish-once", json=body, headers=AUTH)).json()
    assert (plan["pvShare"], plan["evShare"]) == (0.5, 0.25)
    assert 200 < plan["computedPvMeters"] < 300 and 90 < plan["computedEvMeters"] < 160
    response = await client.post(
        "/api/ami/publish-once", json={**body, "dryRun": False}, headers=AUTH
    )
    published = await response.json()
    assert response.status == 200 and published["reads"] == METERS
    assert (published["pvShare"], published["evShare"]) == (0.5, 0.25)
    status = await status_when_stored(client, tenant, METERS)

    # The table holds exactly what the emulator generated, both channels.
    expected: dict[str, tuple[float, float]] = {}
    for feeder in range(1, FEEDERS + 1):
        batch = generate_batch(
            publish_id="x",
            tenant_id=tenant,
            feeder=feeder,
            meter_numbers=feeder_meters(feeder, 1, METERS, FEEDERS),
            read_at=NOON,
            interval_minutes=15,
            mix=FleetMix(pv_share=0.5, ev_share=0.25),
        )
        expected |= dict(
            zip(batch.meter_ids(), zip(batch.kwh, batch.received(), strict=True), strict=True)
        )
    rows = await stored(pool, tenant)
    assert rows == expected
    received = sum(r for _, r in rows.values())
    delivered = sum(d for d, _ in rows.values())
    assert received > 50.0  # 250 arrays at a June noon, a quarter of an hour
    assert not any(d > 0 and r > 0 for d, r in rows.values())

    assert status["totalKwhDelivered"] == pytest.approx(delivered, abs=1e-4)
    assert status["totalKwhReceived"] == pytest.approx(received, abs=1e-4)
    assert status["totalKwhNet"] == pytest.approx(delivered - received, abs=1e-4)

    quick = await (await client.get(f"/api/ami/kpi/quickcheck?tenantId={tenant}")).json()
    feeders = quick["feederLoad"]
    assert len(feeders) == FEEDERS
    assert sum(row["kwhReceived"] for row in feeders) == pytest.approx(received, abs=1e-3)
    assert sum(row["kwh"] for row in feeders) == pytest.approx(delivered, abs=1e-3)
    for row in feeders:
        assert row["kwhNet"] == pytest.approx(row["kwh"] - row["kwhReceived"], abs=1e-3)


async def test_a_version_1_entry_pending_across_the_upgrade_is_stored_as_delivered(
    client: TestClient[Any, Any],
    consumer: None,
    redis: aioredis.Redis,
    settings: Settings,
    pool: AsyncConnectionPool[Any],
    tenant: str,
) -> None:
    batch = feeder_batch(tenant, 1, meters=20)
    document = orjson.loads(encode(batch))
    del document["kwhReceived"]
    document["v"] = 1
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    await redis.xadd(keys.stream, {ENTRY_FIELD: orjson.dumps(document)})
    status = await status_when_stored(client, tenant, 20)
    rows = await stored(pool, tenant)
    assert sorted(rows.values()) == sorted((kwh, 0.0) for kwh in decode(encode(batch)).kwh)
    assert status["totalKwhReceived"] == 0.0
    assert status["totalKwhDelivered"] == pytest.approx(float(np.sum(batch.kwh)), abs=1e-4)
