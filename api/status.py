"""GET /api/ami/scale/status (SPEC §6): what arrived, and how the queue is doing."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from aiohttp import web

from api.context import ApiContext, context
from api.events import TENANT_QUERY, tenant_parameter
from api.openapi import PATHS, READ_ERRORS, errors, ok_response
from api.responses import json_response
from gridlens.queue import queue_depth
from gridlens.sqlfiles import query

routes = web.RouteTableDef()

CONSUMER_ALIVE_S = 10.0  # a consumer's heartbeat is at most this old
RATE_WINDOW_S = 10  # the ingest rate is averaged over the last full seconds

PATHS["/api/ami/scale/status"] = {
    "get": {
        "summary": "Reads stored for the tenant, queue depth, consumers and ingest rate",
        "parameters": [TENANT_QUERY],
        "responses": {
            "200": ok_response("status"),
            **errors(*READ_ERRORS),
        },
    }
}


@routes.get("/api/ami/scale/status")
async def scale_status(request: web.Request) -> web.Response:
    tenant_id = tenant_parameter(request)
    ctx = context(request)
    stored, queue, consumers, rate = await asyncio.gather(
        _stored(ctx, tenant_id), queue_summary(ctx), live_consumers(ctx), _ingest_rate(ctx)
    )
    return json_response(
        {
            "ok": True,
            "tenantId": tenant_id,
            **stored,
            "queue": queue,
            **consumers,
            "ingestRateReadsPerSecond": rate,
        }
    )


async def _stored(ctx: ApiContext, tenant_id: str) -> dict[str, Any]:
    async with ctx.pool.connection() as conn:
        cursor = await conn.execute(query("tenant_status"), {"tenant_id": tenant_id})
        row = await cursor.fetchone()
    meters, reads, latest, delivered, received, late, late_s = row or (
        0,
        0,
        None,
        Decimal(0),
        Decimal(0),
        0,
        None,
    )
    return {
        "totalDistinctMeters": meters,
        "totalReads": reads,
        "latestReadAt": latest.isoformat().replace("+00:00", "Z") if latest else None,
        # The two channels of a net meter; net = delivered − received (both to 0.1 Wh).
        "totalKwhDelivered": float(delivered),
        "totalKwhReceived": float(received),
        "totalKwhNet": float(delivered - received),
        # Reads a meter delivered after a buffered comms outage, and the longest one took
        # from its read time to being stored.
        "lateReads": late,
        "lateSecondsMax": round(late_s, 1) if late_s is not None else None,
    }


async def queue_summary(ctx: ApiContext) -> dict[str, int]:
    depth, completed, dead = await asyncio.gather(
        queue_depth(ctx.redis, ctx.keys),
        ctx.redis.get(ctx.keys.completed),
        ctx.redis.xlen(ctx.keys.dead_letters),
    )
    return {
        "waiting": depth.waiting,
        "active": depth.pending,
        "delayed": depth.delayed,
        "completed": int(completed or 0),
        "deadLettered": int(dead),
    }


async def live_consumers(ctx: ApiContext) -> dict[str, Any]:
    beats: dict[bytes, bytes] = await ctx.redis.hgetall(ctx.keys.consumers)  # type: ignore[assignment]
    now_ms = time.time() * 1000
    limits: dict[str, int] = {}
    for name, beat in beats.items():
        limit, _, at_ms = beat.decode().partition(":")
        if now_ms - int(at_ms) <= CONSUMER_ALIVE_S * 1000:
            limits[name.decode()] = int(limit)
    return {"consumersAlive": len(limits), "inFlightLimits": dict(sorted(limits.items()))}


async def _ingest_rate(ctx: ApiContext) -> float:
    """Reads inserted per second over the last RATE_WINDOW_S complete seconds."""
    now = int(time.time())
    counts = await ctx.redis.mget(
        [ctx.keys.ingested_second(now - ago) for ago in range(1, RATE_WINDOW_S + 1)]
    )
    return round(sum(int(count or 0) for count in counts) / RATE_WINDOW_S, 1)
