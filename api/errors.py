"""One error shape for every 4xx/5xx: ``{"ok": false, "error": "..."}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.context import context
from api.responses import json_response
from gridlens.connections import describe_postgres_error, describe_redis_error
from gridlens.errors import GridLensError

# Redis or PostgreSQL unreachable: 503 naming it, never a 500.
DEPENDENCY_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    psycopg.OperationalError,
    PoolTimeout,
    TimeoutError,
)

log = logging.getLogger(__name__)


class ApiError(GridLensError):
    """An error the client should see, with its status and message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fields = fields


def error_response(error: ApiError) -> web.Response:
    body = {"ok": False, "error": error.message, **error.fields}
    return json_response(body, status=error.status, headers=error.headers)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render every error as JSON; no traceback ever reaches a client."""
    try:
        response: web.StreamResponse = await handler(request)
    except ApiError as error:
        return error_response(error)
    except DEPENDENCY_ERRORS as error:
        return error_response(_dependency_error(request, error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(ApiError(error.status, _http_message(error), headers=headers))
    except Exception:
        log.exception("unhandled error", extra={"action": "http_error", "path": request.path})
        return error_response(ApiError(500, "internal error; see the API log"))
    return response


def _dependency_error(request: web.Request, error: Exception) -> ApiError:
    ctx = context(request)
    if isinstance(error, RedisError):
        message = describe_redis_error(error, ctx.settings.resolved_redis_url)
    else:
        message = describe_postgres_error(error, ctx.settings.resolved_database_url)
    log.warning("dependency down", extra={"action": "dependency_down", "error": message})
    return ApiError(503, message, headers={"Retry-After": "5"})


def _http_message(error: web.HTTPException) -> str:
    text = (error.text or "").strip()
    prefix = f"{error.status}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    if error.status == 413:
        return f"request body too large: {text}"
    return text or error.reason
