"""GET /api/ami/kpi/quickcheck (SPEC §7): a compact summary of the KPI views."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row

from api.context import context
from api.events import TENANT_QUERY, tenant_parameter
from api.openapi import PATHS, READ_ERRORS, errors, ok_response
from api.responses import json_response
from gridlens.sqlfiles import query

routes = web.RouteTableDef()

INTERVALS = 4  # the latest intervals summarised
TOP = 10  # rows of each list
THEFT_BUDGET_MS = 2_000  # a safety net: the theft section gives up past this

PATHS["/api/ami/kpi/quickcheck"] = {
    "get": {
        "summary": "Feeder load, completeness, voltage anomalies and theft suspects, latest",
        "parameters": [TENANT_QUERY],
        "responses": {
            "200": ok_response("the summary; empty lists when the tenant has no reads"),
            **errors(*READ_ERRORS),
        },
    }
}


@routes.get("/api/ami/kpi/quickcheck")
async def quickcheck(request: web.Request) -> web.Response:
    tenant_id = tenant_parameter(request)
    # Every statement on one connection: one checkout and one reset, not one per statement.
    async with context(request).pool.connection() as conn:
        return json_response(await _summary(conn, tenant_id))


async def _summary(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> dict[str, Any]:
    cursor = await conn.execute(
        query("quickcheck_intervals"), {"tenant_id": tenant_id, "intervals": INTERVALS}
    )
    intervals = [read_at for (read_at,) in await cursor.fetchall()]
    if not intervals:
        return {
            "ok": True,
            "tenantId": tenant_id,
            "latestReadAt": None,
            "intervals": [],
            "message": "no reads for this tenant yet",
        }
    latest = intervals[0]
    return {
        "ok": True,
        "tenantId": tenant_id,
        "latestReadAt": _iso(latest),
        "intervals": [_iso(read_at) for read_at in intervals],
        "completeness": await _rows(
            conn, "quickcheck_completeness", {"tenant_id": tenant_id, "since": intervals[-1]}
        ),
        "feederLoad": await _rows(
            conn, "quickcheck_feeder_load", {"tenant_id": tenant_id, "read_at": latest}, TOP
        ),
        "voltageAnomalies": _voltage(
            await _rows(conn, "quickcheck_voltage", {"tenant_id": tenant_id, "read_at": latest})
        ),
        "theftSuspects": await _theft(conn, tenant_id, latest),
    }


async def _rows(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    params: dict[str, Any],
    limit: int | None = None,
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query(name), params)
        rows = await (cursor.fetchmany(limit) if limit else cursor.fetchall())
    return _camelised(rows)


def _voltage(feeders: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "readsOutsideRangeA": sum(row["outsideRangeA"] for row in feeders),
        "readsOutsideRangeB": sum(row["outsideRangeB"] for row in feeders),
        "feeders": [row for row in feeders if row["outsideRangeA"]][:TOP],
    }


async def _theft(
    conn: psycopg.AsyncConnection[Any], tenant_id: str, latest: datetime
) -> dict[str, Any]:
    """The suspects of the latest complete day (UTC), from the meter-day features as last
    refreshed (api/kpi_refresh.py; ``featuresAsOf`` says when), and beside them the
    meter-days with too few reads to judge. The day in progress is never shown: just after
    midnight it holds a few intervals, and no suspect.
    """
    day = latest.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    params = {"tenant_id": tenant_id, "day": day}
    summary: dict[str, Any] = {"day": day.date().isoformat()}
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            # A setting for this transaction only: the pooled connection keeps its own. (After
            # the statements above, the transaction is a savepoint, which a cancel rolls back.)
            await cursor.execute(query("statement_budget"), {"milliseconds": str(THEFT_BUDGET_MS)})
            rows = await (await cursor.execute(query("theft_suspects"), params)).fetchall()
            unjudged = await (await cursor.execute(query("insufficient_data"), params)).fetchall()
            near_zero = await (await cursor.execute(query("near_zero"), params)).fetchall()
            refreshed = await (await cursor.execute(query("theft_refreshed_at"), params)).fetchone()
    except psycopg.errors.QueryCanceled:
        return {
            **summary,
            "computed": False,
            "reason": f"over the quickcheck's {THEFT_BUDGET_MS} ms budget",
        }
    suspects = _camelised(rows)
    return {
        **summary,
        "computed": True,
        "featuresAsOf": _json(refreshed["refreshed_at"]) if refreshed else None,
        "count": len(suspects),
        "top": suspects[:TOP],
        "insufficientData": {
            "count": len(unjudged),
            "top": _camelised(unjudged[:TOP]),
        },
        "nearZero": {"count": len(near_zero), "top": _camelised(near_zero[:TOP])},
    }


def _camelised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as JSON objects: camelCase keys, ISO timestamps, floats to 4 places."""
    return [{_camel(key): _json(value) for key, value in row.items()} for row in rows]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float):
        return round(value, 4)
    return value


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
