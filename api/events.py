"""The emulator's events: POST, GET and DELETE /api/ami/events (SPEC §3)."""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from api.body import json_object
from api.context import context
from api.errors import ApiError
from api.openapi import PATHS, READ_ERRORS, errors, ok_response
from api.responses import json_response
from gridlens.entry import FEEDER_PATTERN, TENANT_PATTERN
from producer.event_store import create_event, delete_event, list_events
from producer.events import (
    DEFAULT_FRACTION,
    FACTOR_RANGE,
    MAX_DURATION_MINUTES,
    THEFT_PATTERNS,
    EventError,
    EventType,
    ImplausibleEvent,
    parse_event,
)

routes = web.RouteTableDef()

MAX_EVENT_ID: Final = 2**63 - 1  # a BIGINT
EVENT_ID: Final = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)


def _event_body() -> dict[str, Any]:
    """The event body's schema, from the bounds that parse_event enforces.

    One variant per type, and per theft pattern, each closed to the fields that apply to
    it; and exactly one of endsAt and durationMinutes.
    """
    low, high = FACTOR_RANGE
    common = {
        "tenantId": {"type": "string", "pattern": TENANT_PATTERN.pattern},
        "feederId": {"type": "string", "pattern": FEEDER_PATTERN.pattern},
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time", "description": "after startsAt"},
        "durationMinutes": {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_MINUTES},
        "fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    }
    theft_fields: dict[str, dict[str, Any]] = {
        "h1": {"alpha": {"type": "number", "minimum": low, "maximum": high}},
        "h2": {
            "windowStartHour": {"type": "number", "minimum": 0, "exclusiveMaximum": 24},
            "windowHours": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 24},
        },
    }

    def variant(event_type: EventType, **fields: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["tenantId", "type", "feederId", "startsAt"],
            "properties": {**common, "type": {"const": event_type.value}, **fields},
        }

    thefts = [
        variant(
            EventType.THEFT,
            # h1 is the default pattern: the only variant where "pattern" may be left out
            pattern={"const": pattern, **({"default": "h1"} if pattern == "h1" else {})},
            **theft_fields.get(pattern, {}),
        )
        for pattern in THEFT_PATTERNS
    ]
    for theft in thefts[1:]:
        theft["required"].append("pattern")
    depth = {"type": "number", "exclusiveMinimum": 0, "maximum": 50, "default": 10}
    return {
        "description": "fraction: share of the feeder's meters, default "
        + ", ".join(f"{share} {kind}" for kind, share in DEFAULT_FRACTION.items()),
        "allOf": [
            {
                "oneOf": [
                    *thefts,
                    variant(EventType.VOLTAGE_SAG, depthPct=depth),
                    variant(EventType.COMMS_OUTAGE, buffered={"type": "boolean", "default": False}),
                    variant(EventType.VACANCY),
                ]
            },
            {"oneOf": [{"required": ["endsAt"]}, {"required": ["durationMinutes"]}]},
        ],
    }


TENANT_QUERY = {  # the tenantId query parameter of the read endpoints (tenant_parameter)
    "name": "tenantId",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "pattern": TENANT_PATTERN.pattern},
}

PATHS["/api/ami/events"] = {
    "post": {
        "summary": "Create an event (theft, voltage-sag, comms-outage, vacancy) on a feeder",
        "security": [{"bearerKey": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _event_body()}},
        },
        "responses": {
            "201": {
                **ok_response("the event, with its id"),
                "links": {
                    "DeleteEvent": {
                        "operationId": "deleteEvent",
                        "parameters": {"eventId": "$response.body#/event/id"},
                    },
                    "ListEvents": {
                        "operationId": "listEvents",
                        "parameters": {"tenantId": "$request.body#/tenantId"},
                    },
                },
            },
            **errors("400", "401", "403", "413", "422", "503"),
        },
    },
    "get": {
        "summary": "The tenant's events",
        "operationId": "listEvents",
        "parameters": [TENANT_QUERY],
        "responses": {"200": ok_response("events, oldest first"), **errors(*READ_ERRORS)},
    },
}
PATHS["/api/ami/events/{eventId}"] = {
    "delete": {
        "summary": "Delete an event; the next publish no longer applies it",
        "operationId": "deleteEvent",
        "security": [{"bearerKey": []}],
        "parameters": [
            {
                "name": "eventId",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_EVENT_ID},
            }
        ],
        "responses": {
            "200": ok_response("deleted"),
            **errors("400", "401", "403", "404", "503", e400="eventId is not an event id"),
        },
    }
}


def tenant_parameter(request: web.Request) -> str:
    tenant_id = request.query.get("tenantId")
    if tenant_id is None:
        raise ApiError(400, "tenantId query parameter is required")
    if not TENANT_PATTERN.fullmatch(tenant_id):
        raise ApiError(400, f"tenantId must match {TENANT_PATTERN.pattern}")
    return tenant_id


@routes.post("/api/ami/events")
async def post_event(request: web.Request) -> web.Response:
    body = await json_object(request)
    try:
        event = parse_event(body)
    except EventError as error:
        raise ApiError(422 if isinstance(error, ImplausibleEvent) else 400, str(error)) from None
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
    if not EVENT_ID.fullmatch(raw) or int(raw) > MAX_EVENT_ID:
        raise ApiError(400, f"eventId must be an integer in 1..{MAX_EVENT_ID}, not {raw!r}")
    if not await delete_event(context(request).pool, int(raw)):
        raise ApiError(404, f"no event {raw}")
    return json_response({"ok": True, "deleted": int(raw)})
