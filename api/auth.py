"""Bearer-key authentication (SPEC §2)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.errors import ApiError
from api.page import PAGE_PATHS
from gridlens.apikey import key_matches

# Probes, metrics, and the live page, which holds no data (its script asks for the key).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", *PAGE_PATHS})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_auth(api_key: str, *, auth_reads: bool) -> Any:
    """Mutating requests always need the key; reads only when ``auth_reads``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and (auth_reads or request.method not in READ_METHODS):
            _authenticate(request, api_key)
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


def _authenticate(request: web.Request, api_key: str) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "missing API key: send Authorization: Bearer <GRIDLENS_API_KEY>",
            headers={"WWW-Authenticate": 'Bearer realm="gridlens"'},
        )
    if not key_matches(presented.strip(), api_key):
        raise ApiError(403, "wrong API key")
