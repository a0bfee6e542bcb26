"""POST /api/ami/publish-once (SPEC §4)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np
from aiohttp import web
from redis.exceptions import RedisError

from api.body import json_object
from api.context import ApiContext, context
from api.errors import ApiError
from api.openapi import PATHS, errors, ok_response
from api.responses import json_response
from gridlens.entry import TENANT_PATTERN
from gridlens.keys import RATE_HISTORY_S
from gridlens.queue import queue_depth
from producer import metrics
from producer.diversity import has_ev, has_pv
from producer.event_store import active_events
from producer.events import Event
from producer.planner import Plan
from producer.publisher import Backpressure, Published, PublishFailed
from producer.randomness import text_seed
from producer.request import (
    ImplausibleRequest,
    PublishRequest,
    RequestError,
    parse_publish_request,
)

routes = web.RouteTableDef()

RETRY_AFTER_S = 5  # what a refused client is told to wait

PATHS["/api/ami/publish-once"] = {
    "post": {
        "summary": "Plan and publish one interval of reads for a tenant's fleet",
        "security": [{"bearerKey": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["tenantId"],
                        "properties": {
                            "tenantId": {"type": "string", "pattern": TENANT_PATTERN.pattern},
                            "intervalMinutes": {
                                "type": "integer",
                                "enum": [5, 15, 30, 60],
                                "default": 15,
                            },
                            "batchSize": {
                                "type": "integer",
                                "minimum": 1,
                                "default": 500,
                                "description": "clamped to 500",
                            },
                            "meterCount": {
                                "type": "integer",
                                "minimum": 1,
                                "default": 500,
                                "description": "clamped to 25,000",
                            },
                            "feederCount": {
                                "type": "integer",
                                "minimum": 1,
                                "default": 25,
                                "description": "clamped to 10..40",
                            },
                            "dryRun": {"type": "boolean", "default": False},
                            "readAt": {
                                "type": "string",
                                "format": "date-time",
                                "description": "aligned down to the interval",
                            },
                            "pvShare": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": 1,
                                "description": "share of meters with rooftop PV (net metered); "
                                "default: the tenant's GRIDLENS_TENANT_SHARES, else "
                                "GRIDLENS_PV_SHARE (0.04)",
                            },
                            "evShare": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": 1,
                                "description": "share of meters with a Level-2 EV charger; "
                                "default: the tenant's GRIDLENS_TENANT_SHARES, else "
                                "GRIDLENS_EV_SHARE (0.02)",
                            },
                        },
                    }
                }
            },
        },
        "responses": {
            "200": ok_response("published, or the plan of a dry run"),
            **errors(
                *("400", "401", "403", "413", "422", "429", "503"),
                e503="Redis or PostgreSQL unreachable, or Redis failed part-way: the message "
                "says how many jobs went out",
            ),
        },
    }
}


@routes.post("/api/ami/publish-once")
async def publish_once(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        body = await json_object(request)
        publish_request = parse_publish_request(
            body, ctx.settings.caps, mix_defaults=ctx.settings.mix
        )
    except (ApiError, web.HTTPRequestEntityTooLarge):
        metrics.PUBLISHES.labels("rejected").inc()
        raise
    except RequestError as error:
        metrics.PUBLISHES.labels("rejected").inc()
        raise ApiError(422 if isinstance(error, ImplausibleRequest) else 400, str(error)) from None
    if publish_request.dry_run:
        return json_response(await _dry_run(ctx, publish_request))
    # Its own task, shielded: a client that goes away does not stop a started publish.
    task = asyncio.create_task(_publish(ctx, publish_request))
    ctx.publishes.add(task)
    task.add_done_callback(ctx.publishes.discard)
    return json_response(await asyncio.shield(task))


async def _dry_run(ctx: ApiContext, publish_request: PublishRequest) -> dict[str, Any]:
    events = await _events(ctx, publish_request)
    plan, late = await ctx.publisher.plan(publish_request, events)
    state = await queue_depth(ctx.redis, ctx.keys)
    rate = ctx.settings.caps.reads_per_second
    metrics.PUBLISHES.labels("dry_run").inc()
    return {
        "ok": True,
        "dryRun": True,
        **_parameters(plan),
        "computedMeters": plan.meters,
        "computedFeederCount": publish_request.feeder_count,
        "computedBatches": plan.jobs,
        **_mix_meters(plan),
        "estimatedJobs": plan.jobs + len(late.jobs),
        "estimatedLateReads": late.reads,  # a buffered outage's backlog (producer/backlog.py)
        # Publishes in progress share the rate cap: their reads go first.
        "estimatedRuntimeSeconds": round(
            (state.delayed_reads + plan.meters + late.reads) / rate, 1
        ),
        "queue": {"waiting": state.waiting, "delayed": state.delayed},
        "safetyWarnings": _warnings(plan) + late.warnings(),
    }


async def _publish(ctx: ApiContext, publish_request: PublishRequest) -> dict[str, Any]:
    events = await _events(ctx, publish_request)
    try:
        with metrics.PUBLISH_SECONDS.time():
            published = await ctx.publisher.publish(publish_request, events)
    except Backpressure as refused:
        metrics.PUBLISHES.labels("refused").inc()
        await _count_refused(ctx)
        raise ApiError(
            429,
            "Backpressure: queue too deep",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            waiting=refused.waiting,
            delayed=refused.delayed,
        ) from None
    except PublishFailed as failed:
        metrics.PUBLISHES.labels("failed").inc()
        raise ApiError(
            503,
            f"Redis failed part-way through the publish: {failed.jobs} of {failed.planned_jobs} "
            f"jobs ({failed.reads} reads) were enqueued; publishing the same readAt again is "
            f"harmless ({failed.error})",
            enqueuedJobs=failed.jobs,
            enqueuedReads=failed.reads,
            plannedJobs=failed.planned_jobs,
            readAt=_iso(failed.plan.request),
        ) from None
    metrics.PUBLISHES.labels("ok").inc()
    return _result(published)


async def _count_refused(ctx: ApiContext) -> None:
    """One more 429 in this second's count, which the live page shows; best effort: a count
    that Redis failed to keep does not change the answer."""
    key = ctx.keys.refused_second(int(time.time()))
    with contextlib.suppress(RedisError, OSError):
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, RATE_HISTORY_S)
            await pipe.execute()


async def _events(ctx: ApiContext, publish_request: PublishRequest) -> list[Event]:
    """The events the publish applies, and those a buffered outage's backlog met."""
    return await active_events(
        ctx.pool,
        publish_request.tenant_id,
        publish_request.read_at,
        publish_request.interval_minutes,
    )


def _result(published: Published) -> dict[str, Any]:
    plan = published.plan
    return {
        "ok": True,
        "dryRun": False,
        "publishId": published.publish_id,
        **_parameters(plan),
        "meters": plan.meters,
        "jobs": published.jobs,
        "reads": published.reads,
        "skippedReads": published.skipped_reads,
        "lateReads": published.late_reads,
        "elapsedSeconds": round(published.elapsed_s, 3),
        "readsPerSecond": published.pace.average_per_second(),
        "fullestSecondReads": published.pace.fullest_second(),
        "safetyWarnings": _warnings(plan) + published.warnings,
    }


def _parameters(plan: Plan) -> dict[str, Any]:
    request = plan.request
    return {
        "tenantId": request.tenant_id,
        "readAt": _iso(request),
        "intervalMinutes": request.interval_minutes,
        "batchSize": request.batch_size,
        "meterCount": request.meter_count,
        "feederCount": request.feeder_count,
        "pvShare": request.mix.pv_share,
        "evShare": request.mix.ev_share,
        "meterRange": {"first": plan.first_meter, "last": plan.last_meter},
        "nextCursor": plan.next_cursor,
        "cyclesToCoverFleet": plan.cycles,
    }


def _mix_meters(plan: Plan) -> dict[str, int]:
    """How many of the planned meters have rooftop PV and an EV charger."""
    request = plan.request
    meters = np.arange(plan.first_meter, plan.last_meter + 1, dtype=np.int64)
    seed = text_seed(request.tenant_id)
    return {
        "computedPvMeters": int(has_pv(seed, meters, request.mix).sum()),
        "computedEvMeters": int(has_ev(seed, meters, request.mix).sum()),
    }


def _warnings(plan: Plan) -> list[str]:
    truncation = plan.truncation_warning()
    return [*plan.request.warnings, *([truncation] if truncation else [])]


def _iso(request: PublishRequest) -> str:
    return request.read_at.isoformat().replace("+00:00", "Z")
