"""The OpenAPI 3 document of the API; each endpoint module adds its paths."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.responses import json_response
from gridlens import __version__

routes = web.RouteTableDef()

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
        "get": {"summary": "This document", "responses": {"200": ok_response("OpenAPI 3")}}
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GridLens AMI API",
            "version": __version__,
            "description": "Plans and publishes interval reads of a deterministic AMI fleet; "
            "reports what was ingested.",
        },
        "servers": [{"url": "/"}],
        "paths": PATHS,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"bearerKey": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
