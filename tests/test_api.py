"""The API skeleton over real Redis and PostgreSQL: health, auth, errors, OpenAPI."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from api.app import create_app
from api.queue_metrics import QueueCollector
from app.embedded import free_port
from gridlens.keys import Keys
from gridlens.queue import ensure_group
from gridlens.settings import Settings
from tests.conftest import TEST_API_KEY, ClientFactory

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()


async def test_healthz_answers(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"ok": True}


async def test_readyz_is_200_when_both_services_answer(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"ok": True, "postgres": "up", "redis": "up"}


async def test_readyz_names_redis_when_it_is_down(make_client: ClientFactory) -> None:
    client = await make_client(redis_url=f"redis://:pw@127.0.0.1:{free_port()}/0")
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["ok"] is False and body["error"] == "not ready: redis down"
    assert "Redis is unreachable" in body["down"]["redis"]
    assert "pw" not in body["down"]["redis"]  # the password is redacted


async def test_readyz_names_postgres_when_it_is_down(make_client: ClientFactory) -> None:
    client = await make_client(database_url=f"postgresql://x@127.0.0.1:{free_port()}/x")
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["error"] == "not ready: postgres down"
    assert "PostgreSQL" in body["down"]["postgres"]


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "missing API key: send Authorization: Bearer <GRIDLENS_API_KEY>"),
        ({"Authorization": "Basic abc"}, 401, "missing API key"),
        ({"Authorization": "Bearer wrong-key-0123456789"}, 403, "wrong API key"),
    ],
)
async def test_mutating_endpoints_need_the_key(
    client: TestClient[Any, Any], headers: dict[str, str], status: int, error: str
) -> None:
    response = await client.post("/api/ami/publish-once", json={"tenantId": "T"}, headers=headers)
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["ok"] is False and body["error"].startswith(error)
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_reads_are_open_unless_auth_reads(make_client: ClientFactory) -> None:
    open_client = await make_client()
    assert (await open_client.get("/api/openapi.json")).status == 200
    closed_client = await make_client(auth_reads=True)
    assert (await closed_client.get("/api/openapi.json")).status == 401
    assert (await closed_client.get("/api/openapi.json", headers=AUTH)).status == 200
    assert (await closed_client.get("/healthz")).status == 200  # probes stay open


async def test_unknown_routes_and_methods_get_json_errors(client: TestClient[Any, Any]) -> None:
    missing = await client.get("/nowhere")
    assert missing.status == 404
    assert await missing.json() == {"ok": False, "error": "Not Found"}
    wrong_method = await client.get("/api/ami/publish-once", headers=AUTH)
    assert wrong_method.status == 405
    assert (await wrong_method.json())["ok"] is False
    assert "POST" in wrong_method.headers["Allow"]


async def test_a_body_over_64_kib_is_413_json(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/ami/publish-once",
        data=b'{"tenantId":"' + b"x" * (64 * 1024) + b'"}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status == 413
    body = await response.json()
    assert body["ok"] is False and body["error"].startswith("request body too large")


async def test_openapi_document_is_valid(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/openapi.json")
    document = await response.json()
    validate(document)
    assert {"/healthz", "/readyz", "/metrics", "/api/ami/publish-once"} <= set(document["paths"])


async def test_with_auth_reads_the_document_names_the_key_on_every_api_read(
    make_client: ClientFactory,
) -> None:
    client = await make_client(auth_reads=True)
    document = await (await client.get("/api/openapi.json", headers=AUTH)).json()
    validate(document)
    status = document["paths"]["/api/ami/scale/status"]["get"]
    assert status["security"] == [{"bearerKey": []}] and {"401", "403"} <= set(status["responses"])
    assert "security" not in document["paths"]["/healthz"]["get"]  # probes stay open


async def test_metrics_are_prometheus_text(client: TestClient[Any, Any]) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'gridlens_api_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_metrics_read_the_queue_from_redis_at_each_scrape(
    client: TestClient[Any, Any], redis: aioredis.Redis, settings: Settings
) -> None:
    keys = Keys(settings.redis_namespace)
    await ensure_group(redis, keys)
    for _ in range(3):
        await redis.xadd(keys.stream, {"e": b"{}"})
    await redis.xadd(keys.dead_letters, {"e": b"{}"})
    text = await (await client.get("/metrics")).text()
    for line in (
        "gridlens_redis_up 1.0",
        "gridlens_queue_waiting_jobs 3.0",
        "gridlens_queue_pending_jobs 0.0",
        "gridlens_queue_dead_letter_entries 1.0",
        "gridlens_queue_depth_limit 500.0",
        "gridlens_publish_reads_per_second_limit 2500.0",
        "gridlens_redis_connected_replicas 0.0",  # the suite's Redis is a single server
        "gridlens_redis_min_replicas 0.0",
    ):
        assert line in text.splitlines()


def test_a_new_primary_serving_the_queue_is_counted_once() -> None:
    collector = QueueCollector()
    for run_id in ("a1", "a1", "b2", "b2", "c3"):  # first seen, then two failovers
        collector.saw_primary(run_id)
    assert collector.primary_changes == 2


async def test_metrics_say_redis_is_down_instead_of_stale_queue_figures(
    make_client: ClientFactory,
) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert "gridlens_redis_up 0.0" in text.splitlines()
    assert "gridlens_queue_waiting_jobs" not in text


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object, not list"),
        (b"", "request body is empty"),
    ],
)
async def test_a_malformed_body_is_400_json(
    client: TestClient[Any, Any], body: bytes, error: str
) -> None:
    response = await client.post(
        "/api/ami/publish-once", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 400
    payload = await response.json()
    assert payload["ok"] is False and payload["error"].startswith(error)


async def test_an_unexpected_error_is_500_json_without_a_traceback(settings: Settings) -> None:
    app = create_app(settings)

    async def broken(request: Any) -> Any:
        raise RuntimeError("secret internals")

    app.router.add_get("/broken", broken)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/broken")
        assert response.status == 500
        assert await response.json() == {"ok": False, "error": "internal error; see the API log"}
