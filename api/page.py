"""GET /: the live page, one HTML file, one script and one style sheet of our own
(api/static/), which poll the JSON endpoints every 2 s and draw the charts as SVG.

The page loads nothing from another host, and its Content-Security-Policy says so to the
browser: scripts, styles and requests from this origin only, no inline script, no form
sent anywhere. The page itself holds no data, so it is served without the key even when
reads need it (GRIDLENS_AUTH_READS=1); its script then asks for the key and sends it only
as a bearer header.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

from api.openapi import AUTH_READS, PATHS

routes = web.RouteTableDef()

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Path -> (file in api/static, content type).
ASSETS: Final = {
    "/": ("index.html", "text/html"),
    "/page.js": ("page.js", "text/javascript"),
    "/page.css": ("page.css", "text/css"),
    "/icon.svg": ("icon.svg", "image/svg+xml"),
}
PAGE_PATHS: Final = frozenset(ASSETS)
AUTH_READS_MARK: Final = b'data-auth-reads="0"'

PATHS["/"] = {
    "get": {
        "summary": "The live page: rates, queue, consumers and a tenant's KPIs, and a publish form",
        "responses": {
            "200": {
                "description": "HTML; its script polls the JSON endpoints",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    }
}


def _asset(name: str) -> bytes:
    return resources.files("api").joinpath("static", name).read_bytes()


BODIES: Final = {path: _asset(name) for path, (name, _) in ASSETS.items()}
assert AUTH_READS_MARK in BODIES["/"]


async def serve(request: web.Request) -> web.Response:
    body = BODIES[request.path]
    if request.path == "/" and request.app[AUTH_READS]:
        body = body.replace(AUTH_READS_MARK, b'data-auth-reads="1"')
    return web.Response(body=body, content_type=ASSETS[request.path][1], headers=HEADERS)


for _path in ASSETS:
    routes.get(_path)(serve)
