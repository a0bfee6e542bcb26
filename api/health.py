"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import queue_metrics
from api.context import context
from api.errors import ApiError
from api.responses import json_response
from gridlens.connections import (
    check_postgres,
    check_redis,
    describe_postgres_error,
    describe_redis_error,
)

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return json_response({"ok": True})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """PostgreSQL and Redis both answer: 200; else 503 naming what is down."""
    ctx = context(request)
    settings = ctx.settings
    redis_result, postgres_result = await asyncio.gather(
        check_redis(ctx.redis), check_postgres(ctx.pool), return_exceptions=True
    )
    down: dict[str, str] = {}
    if isinstance(redis_result, BaseException):
        down["redis"] = describe_redis_error(redis_result, settings.resolved_redis_url)
    if isinstance(postgres_result, BaseException):
        down["postgres"] = describe_postgres_error(
            postgres_result, ctx.settings.resolved_database_url
        )
    if down:
        raise ApiError(503, f"not ready: {' and '.join(sorted(down))} down", down=down)
    return json_response({"ok": True, "postgres": "up", "redis": "up"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    await queue_metrics.refresh(context(request))
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
