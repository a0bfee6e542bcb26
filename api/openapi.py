"""The OpenAPI 3 document of the API; each endpoint module adds its paths."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.responses import json_response
from gridlens import __version__

routes = web.RouteTableDef()
AUTH_READS: web.AppKey[bool] = web.AppKey("auth_reads", bool)  # reads need the key too

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {"ok": {"type": "boolean", "enum": [False]}, "error": {"type": "string"}},
}


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# What each error status means wherever it is answered; a route lists the ones it gives.
ERRORS: dict[str, str] = {
    "400": "malformed: the message says what is wrong; nothing changed",
    "401": "no API key (read endpoints: only with GRIDLENS_AUTH_READS=1)",
    "403": "wrong API key (read endpoints: only with GRIDLENS_AUTH_READS=1)",
    "404": "no such resource",
    "413": "body over 64 KiB; nothing changed",
    "422": "well-formed, but asks for what cannot be (a readAt in the future, an event "
    "that ends before it starts); nothing changed",
    "429": "backpressure: queue too deep; nothing enqueued (see Retry-After)",
    "503": "Redis or PostgreSQL unreachable; the message names it (see Retry-After)",
}
READ_ERRORS = ("400", "401", "403", "503")  # a read endpoint with a tenantId parameter


def errors(*statuses: str, **descriptions: str) -> dict[str, Any]:
    """The error responses of a route; ``descriptions`` (by "e400" etc.) override ERRORS."""
    return {
        status: error_response(descriptions.get(f"e{status}", ERRORS[status]))
        for status in statuses
    }


def ok_response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {"summary": "The process is alive", "responses": {"200": ok_response("alive")}}
    },
    "/readyz": {
        "get": {
            "summary": "PostgreSQL and Redis are reachable",
            "responses": {
                "200": ok_response("both answer"),
                "503": error_response("names the service that is down"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics of this process",
            "responses": {
                "200": {
                    "description": "text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": ok_response("OpenAPI 3"), **errors("401", "403")},
        }
    },
}


def document(auth_reads: bool = False) -> dict[str, Any]:
    """The document; with ``auth_reads`` every /api/ read also names the bearer key."""
    paths = {
        path: {
            method: (
                {"security": [{"bearerKey": []}], **operation}
                if auth_reads and path.startswith("/api/")
                else operation
            )
            for method, operation in operations.items()
        }
        for path, operations in PATHS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GridLens AMI API",
            "version": __version__,
            "description": "Plans and publishes interval reads of a deterministic AMI fleet; "
            "reports what was ingested.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearerKey": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app[AUTH_READS]))
