"""The aiohttp application and the ``gridlens api`` process."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from api import events, health, kpi, live, openapi, page, publish, status
from api.auth import bearer_auth
from api.context import CONTEXT, connections, shutdown_begins
from api.errors import json_errors
from api.kpi_refresh import background_refresh
from api.partitions import background_partitions
from gridlens.metrics import Counter, Histogram
from gridlens.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024

HTTP_REQUESTS = Counter(
    "gridlens_api_http_requests_total",
    "HTTP requests served, by route and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "gridlens_api_http_request_duration_seconds", "Time to serve one HTTP request.", ["route"]
)


@web.middleware
async def http_metrics(request: web.Request, handler: Any) -> web.StreamResponse:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    response: web.StreamResponse = await handler(request)
    HTTP_SECONDS.labels(name).observe(time.perf_counter() - started)
    HTTP_REQUESTS.labels(name, request.method, str(response.status)).inc()
    return response


def create_app(settings: Settings) -> web.Application:
    """The application; ``settings`` resolved (Settings.resolved)."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            http_metrics,
            json_errors,
            bearer_auth(settings.resolved_api_key, auth_reads=settings.auth_reads),
        ],
    )
    app[openapi.AUTH_READS] = settings.auth_reads
    app.cleanup_ctx.append(connections(settings))
    app.on_shutdown.append(shutdown_begins)
    background_pool = lambda running: running[CONTEXT].background_pool  # noqa: E731
    app.cleanup_ctx.append(background_refresh(background_pool))
    app.cleanup_ctx.append(background_partitions(settings.retention_days, background_pool))
    for module in (health, openapi, publish, events, status, kpi, live, page):
        app.add_routes(module.routes)
    return app


def run_api(settings: Settings) -> None:
    log.info(
        "api listening", extra={"action": "api_start", "host": settings.host, "port": settings.port}
    )
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_grace_s,  # requests, publishes among them
    )
