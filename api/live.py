"""What the live page (api/page.py) polls besides status and quickcheck: the queue's
last minutes, and the tenants to choose from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api.context import ApiContext, context
from api.errors import ApiError
from api.openapi import PATHS, errors, ok_response
from api.responses import json_response
from api.status import live_consumers, queue_summary
from gridlens.keys import RATE_HISTORY_S
from gridlens.sqlfiles import query

routes = web.RouteTableDef()

RATE_SECONDS: Final = 600  # the chart's 10 minutes, and the most one request may ask
MAX_TENANTS: Final = 1_000
MAX_UNIX_SECOND: Final = 10**11 - 1  # the year 5138

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
            },
            {
                "name": "after",
                "in": "query",
                "description": "only the seconds after this one (unix time): what a poller "
                "has not seen, from the start + seconds of its last answer",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_UNIX_SECOND},
            },
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
    seconds = _integer(request, "seconds", RATE_SECONDS, 1, RATE_SECONDS)
    after = _integer(request, "after", 0, 0, MAX_UNIX_SECOND)
    ctx = context(request)
    now = int(time.time())
    span = range(max(now - seconds, min(after + 1, now)), now)
    (enqueued, ingested, refused), queue, consumers = await asyncio.gather(
        _series(ctx, span), queue_summary(ctx), live_consumers(ctx)
    )
    caps = ctx.settings.caps
    return json_response(
        {
            "ok": True,
            "start": span.start,  # unix time of the first second
            "from": datetime.fromtimestamp(span.start, UTC).isoformat().replace("+00:00", "Z"),
            "seconds": len(span),
            "enqueued": enqueued,
            "ingested": ingested,
            "refused": refused,
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


async def _series(ctx: ApiContext, span: range) -> tuple[list[int], list[int], list[int]]:
    """Reads enqueued, reads ingested and publishes refused in each second of ``span``."""
    if not span:  # nothing new since the poller's last answer
        return [], [], []
    enqueued, ingested, refused = await asyncio.gather(
        ctx.redis.hmget(ctx.keys.enqueued, [str(second) for second in span]),
        ctx.redis.mget([ctx.keys.ingested_second(second) for second in span]),
        ctx.redis.mget([ctx.keys.refused_second(second) for second in span]),
    )
    return _counts(enqueued), _counts(ingested), _counts(refused)


def _integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, str(default))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(high))) or not (
        low <= int(raw) <= high
    ):
        raise ApiError(400, f"{name} must be an integer in {low}..{high}, not {raw!r}")
    return int(raw)


def _counts(values: Sequence[Any]) -> list[int]:
    return [int(value or 0) for value in values]
