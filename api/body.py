"""Reading a JSON request body: size-limited, parsed strictly, errors as 400/413."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from api.errors import ApiError


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; over the app's client_max_size it is a 413."""
    raw = await request.read()  # raises HTTPRequestEntityTooLarge past the limit
    if not raw.strip():
        raise ApiError(400, "request body is empty: send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(body).__name__}")
    return body
