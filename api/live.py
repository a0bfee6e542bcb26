"""What the live page (api/page.py) polls besides status and quickcheck: the queue's
last minutes, and the tenants to choose from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api.context import context
from api.errors import ApiError
from api.openapi import PATHS, errors, ok_response
from api.responses import json_response
from api.status import live_consumers, queue_summary
from gridlens.keys import RATE_HISTORY_S
from gridlens.sqlfiles import query

routes = web.RouteTableDef()

RATE_SECONDS: Final = 600  # the chart's 10 minutes, and the most one request may ask
MAX_TENANTS: Final = 1_000

PATHS["/api/ami/scale/rates"] = {
    "get": {
        "summary": "Reads enqueued and ingested, and publishes refused, per second; the queue "
        "and its limits",
        "parameters": [
            {
                "name": "seconds",
                "in": "query",
                "description": "the last complete seconds to return, oldest first",
                "schema": {"type": "integer", "minimum": 1, "maximum": RATE_SECONDS},
            }
        ],
        "responses": {
            "200": ok_response("the series and the queue"),
            **errors("400", "401", "403", "503"),
        },
    }
}
PATHS["/api/ami/tenants"] = {
    "get": {
        "summary": f"The tenants with reads stored, in order (the first {MAX_TENANTS:,})",
        "responses": {"200": ok_response("tenant ids"), **errors("401", "403", "503")},
    }
}

assert RATE_SECONDS < RATE_HISTORY_S  # the counters outlive the window


@routes.get("/api/ami/scale/rates")
async def scale_rates(request: web.Request) -> web.Response:
    """Per second, by the API's clock: reads enqueued (counted by the Redis server's clock
    as they are written), reads ingested (by the consumers' clocks), and publishes refused
    with 429. The current second is left out: it is not over."""
    seconds = _seconds(request)
    ctx = context(request)
    now = int(time.time())
    span = range(now - seconds, now)
    enqueued, ingested, refused, queue, consumers = await asyncio.gather(
        ctx.redis.hmget(ctx.keys.enqueued, [str(second) for second in span]),
        ctx.redis.mget([ctx.keys.ingested_second(second) for second in span]),
        ctx.redis.mget([ctx.keys.refused_second(second) for second in span]),
        queue_summary(ctx),
        live_consumers(ctx),
    )
    caps = ctx.settings.caps
    return json_response(
        {
            "ok": True,
            "from": datetime.fromtimestamp(span.start, UTC).isoformat().replace("+00:00", "Z"),
            "seconds": seconds,
            "enqueued": _counts(enqueued),
            "ingested": _counts(ingested),
            "refused": _counts(refused),
            "readsPerSecondLimit": caps.reads_per_second,
            "queueDepthLimit": caps.queue_depth,
            "queue": queue,
            **consumers,
        }
    )


@routes.get("/api/ami/tenants")
async def tenants(request: web.Request) -> web.Response:
    async with context(request).pool.connection() as conn:
        cursor = await conn.execute(query("tenants"), {"limit": MAX_TENANTS})
        rows = await cursor.fetchall()
    return json_response({"ok": True, "tenants": [tenant_id for (tenant_id,) in rows]})


def _seconds(request: web.Request) -> int:
    raw = request.query.get("seconds", str(RATE_SECONDS))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= RATE_SECONDS:
        raise ApiError(400, f"seconds must be an integer in 1..{RATE_SECONDS}, not {raw!r}")
    return int(raw)


def _counts(values: Sequence[Any]) -> list[int]:
    return [int(value or 0) for value in values]
