"""POST /api/ami/publish-once (SPEC §4)."""

from __future__ import annotations

from aiohttp import web

from api.body import json_object
from api.errors import ApiError
from api.openapi import PATHS, error_response

routes = web.RouteTableDef()

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
                            "tenantId": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"},
                            "intervalMinutes": {
                                "type": "integer",
                                "enum": [5, 15, 30, 60],
                                "default": 15,
                            },
                            "batchSize": {"type": "integer", "minimum": 1, "default": 500},
                            "meterCount": {"type": "integer", "minimum": 1, "default": 500},
                            "feederCount": {"type": "integer", "minimum": 1, "default": 25},
                            "dryRun": {"type": "boolean", "default": False},
                            "readAt": {"type": "string", "format": "date-time"},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "published, or the plan of a dry run"},
            "400": error_response("malformed request; nothing enqueued"),
            "401": error_response("no API key"),
            "403": error_response("wrong API key"),
            "413": error_response("body over 64 KiB"),
            "429": error_response("backpressure: queue too deep"),
            "503": error_response("Redis or PostgreSQL unreachable"),
        },
    }
}


@routes.post("/api/ami/publish-once")
async def publish_once(request: web.Request) -> web.Response:
    await json_object(request)
    raise ApiError(501, "publish-once is not implemented yet")
