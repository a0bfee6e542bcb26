"""The live page's server side: GET / and its assets, and the JSON it polls that no other
endpoint gives (rates per second, tenants). The page in a browser: test_page_browser.py."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from api.page import ASSETS
from gridlens.keys import RATE_HISTORY_S, Keys
from gridlens.settings import HARD_MAX_READS_PER_SECOND, Settings
from tests.conftest import TEST_API_KEY, ClientFactory
from tests.test_publish import fill_queue

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


async def test_the_page_and_its_assets_forbid_other_origins_and_inline_script(
    client: TestClient[Any, Any],
) -> None:
    for path, (_, content_type) in ASSETS.items():
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == content_type
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.split(" ", 1) for part in policy.split("; "))
        assert directives["default-src"] == "'none'"
        for source in ("script-src", "style-src", "connect-src", "img-src"):
            assert directives[source] == "'self'", source  # no 'unsafe-inline', no host
        assert directives["form-action"] == "'none'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = await (await client.get("/")).text()
    assert 'data-auth-reads="0"' in page
    assert '<script src="/page.js" defer></script>' in page
    # No inline script, handler or style for the policy to refuse.
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/page.js" defer>']
    assert not re.search(r"<[^>]*\s(on[a-z]+|style)=", page)
    assert "http://" not in page and "https://" not in page


async def test_the_page_is_served_without_the_key_when_reads_need_it(
    make_client: ClientFactory,
) -> None:
    client = await make_client(auth_reads=True)
    response = await client.get("/")
    assert response.status == 200
    assert 'data-auth-reads="1"' in await response.text()
    assert (await client.get("/page.js")).status == 200
    assert (await client.get("/api/ami/scale/rates")).status == 401
    assert (await client.get("/api/ami/tenants")).status == 401
    assert (await client.get("/api/ami/scale/rates", headers=AUTH)).status == 200


async def test_rates_count_every_read_enqueued_and_ingested_within_the_cap(
    client: TestClient[Any, Any], consumer: None, tenant: str
) -> None:
    response = await client.post(
        "/api/ami/publish-once",
        json={"tenantId": tenant, "meterCount": 6_000, "feederCount": 12},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()

    deadline = time.monotonic() + 30
    while True:  # until the last second of ingest is complete
        rates = await (await client.get("/api/ami/scale/rates")).json()
        if sum(rates["ingested"]) == 6_000 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert rates["seconds"] == 600 and len(rates["enqueued"]) == 600
    assert sum(rates["enqueued"]) == 6_000 and sum(rates["ingested"]) == 6_000
    assert 0 < max(rates["enqueued"]) <= HARD_MAX_READS_PER_SECOND
    assert sum(rates["refused"]) == 0
    assert rates["readsPerSecondLimit"] == HARD_MAX_READS_PER_SECOND
    assert rates["queueDepthLimit"] == 500
    assert rates["consumersAlive"] == 1 and rates["queue"]["completed"] == 12
    assert abs(rates["start"] + rates["seconds"] - time.time()) < 5  # up to the last second
    recent = await (await client.get("/api/ami/scale/rates?seconds=5")).json()
    assert recent["seconds"] == 5 and len(recent["ingested"]) == 5
    # What a poller has not seen: the seconds after the last of its previous answer.
    last = recent["start"] + recent["seconds"] - 1
    after = await (await client.get(f"/api/ami/scale/rates?after={last}")).json()
    assert after["start"] == last + 1 and len(after["enqueued"]) == after["seconds"] <= 5
    ahead = await client.get(f"/api/ami/scale/rates?after={last + 3_600}")
    assert (await ahead.json())["enqueued"] == []  # nothing after a second still to come
    late = await (await client.get(f"/api/ami/scale/rates?after={last - 10_000}")).json()
    assert late["seconds"] == 600  # never more than the window
    tenants = await (await client.get("/api/ami/tenants")).json()
    assert tenant in tenants["tenants"] and tenants["tenants"] == sorted(tenants["tenants"])


async def test_a_refused_publish_is_counted_in_its_second(
    client: TestClient[Any, Any], redis: aioredis.Redis, settings: Settings, tenant: str
) -> None:
    await fill_queue(redis, Keys(settings.redis_namespace), tenant, 501)
    for _ in range(2):
        refused = await client.post(
            "/api/ami/publish-once", json={"tenantId": tenant}, headers=AUTH
        )
        assert refused.status == 429
    await asyncio.sleep(1.0)  # the second of the refusals, complete
    rates = await (await client.get("/api/ami/scale/rates?seconds=10")).json()
    assert sum(rates["refused"]) == 2 and sum(rates["enqueued"]) == 0
    assert rates["queue"]["waiting"] == 501


async def test_seconds_older_than_the_history_are_trimmed_as_jobs_are_enqueued(
    client: TestClient[Any, Any], redis: aioredis.Redis, settings: Settings, tenant: str
) -> None:
    keys = Keys(settings.redis_namespace)
    old = int(time.time()) - RATE_HISTORY_S - 1_000
    await redis.hset(keys.enqueued, mapping={str(old + n): 500 for n in range(RATE_HISTORY_S + 60)})
    response = await client.post(
        "/api/ami/publish-once", json={"tenantId": tenant, "meterCount": 10}, headers=AUTH
    )
    assert response.status == 200
    # Only this publish's seconds are left: its 10 jobs (a meter on each of 10 feeders) may
    # straddle the turn of a second.
    left = {
        int(second): int(reads) for second, reads in (await redis.hgetall(keys.enqueued)).items()
    }
    assert min(left) >= int(time.time()) - 5 and sum(left.values()) == 10
    assert 0 < await redis.ttl(keys.enqueued) <= RATE_HISTORY_S


async def test_rates_refuse_a_bad_window(client: TestClient[Any, Any]) -> None:
    for raw in ("0", "601", "-1", "ten", "1e3", "٣", "9" * 5000):
        response = await client.get("/api/ami/scale/rates", params={"seconds": raw})
        assert response.status == 400, raw
        assert "seconds must be an integer in 1..600" in (await response.json())["error"]
    for raw in ("-1", "1.5", "٣", "1" * 12):
        response = await client.get("/api/ami/scale/rates", params={"after": raw})
        assert response.status == 400, raw
        assert "after must be an integer in 0..99999999999" in (await response.json())["error"]
