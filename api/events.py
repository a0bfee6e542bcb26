"""The emulator's events: POST, GET and DELETE /api/ami/events (SPEC §3)."""

from __future__ import annotations

from aiohttp import web

from api.body import json_object
from api.context import context
from api.errors import ApiError
from api.openapi import PATHS, error_response, ok_response
from api.responses import json_response
from gridlens.entry import FEEDER_PATTERN, TENANT_PATTERN
from producer.event_store import create_event, delete_event, list_events
from producer.events import EventError, parse_event

routes = web.RouteTableDef()

_EVENT_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tenantId", "type", "feederId", "startsAt"],
    "properties": {
        "tenantId": {"type": "string", "pattern": TENANT_PATTERN.pattern},
        "type": {"type": "string", "enum": ["theft", "voltage-sag", "comms-outage"]},
        "feederId": {"type": "string", "pattern": FEEDER_PATTERN.pattern},
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time"},
        "durationMinutes": {"type": "integer", "minimum": 1},
        "fraction": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "share of the feeder's meters; default 0.05 theft, "
            "0.5 voltage-sag, 0.1 comms-outage",
        },
        "pattern": {
            "type": "string",
            "enum": ["h1", "h2", "h3", "h4", "h5", "h6"],
            "default": "h1",
        },
        "alpha": {"type": "number", "minimum": 0.1, "maximum": 0.8},
        "windowStartHour": {"type": "number", "minimum": 0, "exclusiveMaximum": 24},
        "windowHours": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 24},
        "depthPct": {"type": "number", "exclusiveMinimum": 0, "maximum": 50, "default": 10},
    },
}
TENANT_QUERY = {  # the tenantId query parameter of the read endpoints (tenant_parameter)
    "name": "tenantId",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "pattern": TENANT_PATTERN.pattern},
}

PATHS["/api/ami/events"] = {
    "post": {
        "summary": "Create an event (theft, voltage-sag, comms-outage) on a fraction of a feeder",
        "security": [{"bearerKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_BODY}}},
        "responses": {
            "201": ok_response("the event, with its id"),
            "400": error_response("invalid event; nothing stored"),
            "401": error_response("no API key"),
            "403": error_response("wrong API key"),
            "503": error_response("PostgreSQL unreachable"),
        },
    },
    "get": {
        "summary": "The tenant's events",
        "parameters": [TENANT_QUERY],
        "responses": {
            "200": ok_response("events, oldest first"),
            "400": error_response("tenantId missing or invalid"),
        },
    },
}
PATHS["/api/ami/events/{eventId}"] = {
    "delete": {
        "summary": "Delete an event; the next publish no longer applies it",
        "security": [{"bearerKey": []}],
        "parameters": [
            {
                "name": "eventId",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        ],
        "responses": {
            "200": ok_response("deleted"),
            "400": error_response("eventId is not a positive integer"),
            "404": error_response("no such event"),
        },
    }
}


def tenant_parameter(request: web.Request) -> str:
    tenant_id = request.query.get("tenantId")
    if tenant_id is None:
        raise ApiError(400, "tenantId query parameter is required")
    if not TENANT_PATTERN.match(tenant_id):
        raise ApiError(400, f"tenantId must match {TENANT_PATTERN.pattern}")
    return tenant_id


@routes.post("/api/ami/events")
async def post_event(request: web.Request) -> web.Response:
    body = await json_object(request)
    try:
        event = parse_event(body)
    except EventError as error:
        raise ApiError(400, str(error)) from None
    stored = await create_event(context(request).pool, event)
    return json_response({"ok": True, "event": stored.to_json()}, status=201)


@routes.get("/api/ami/events")
async def get_events(request: web.Request) -> web.Response:
    tenant_id = tenant_parameter(request)
    events = await list_events(context(request).pool, tenant_id)
    return json_response(
        {"ok": True, "tenantId": tenant_id, "events": [event.to_json() for event in events]}
    )


@routes.delete("/api/ami/events/{event_id}")
async def remove_event(request: web.Request) -> web.Response:
    raw = request.match_info["event_id"]
    if not raw.isdigit() or int(raw) < 1 or int(raw) > 2**63 - 1:
        raise ApiError(400, f"eventId must be a positive integer, not {raw!r}")
    if not await delete_event(context(request).pool, int(raw)):
        raise ApiError(404, f"no event {raw}")
    return json_response({"ok": True, "deleted": int(raw)})
