"""Keeping the per-meter-day KPI features current (table kpi_meter_day_features).

A day's features need all of the tenant's rows of that day, so they are kept rather
than computed per query, hour by hour (sql/migrations/0014): a pass finds the days
whose read count (from the ingest rollup) differs from when their features were
computed and recomputes the hours that changed (kpi_meter_hours). A day that is over
is then added up from its hours and judged, and its features and verdicts written at
once (api/kpi_judge.py); so is every later day (its verdict starts from the baseline of
the days before it). A day's hours 0-22 are added up ahead of its close, once it has
its reads of 23:00 (sql/migrations/0016). One process at a time does a pass (an advisory
lock); every API process runs passes in the background, so whichever is free keeps them
current.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from api.background import every
from api.kpi_judge import judge_day
from gridlens.sqlfiles import query

log = logging.getLogger(__name__)

REFRESH_EVERY_S: Final = 30.0
PASS_TIMEOUT_MS: Final = 600_000  # one day's refresh, at most


async def refresh_stale_days(pool: AsyncConnectionPool[Any]) -> list[tuple[str, datetime]]:
    """Recompute the features of every changed day; return the (tenant, day) refreshed.

    Each day is committed on its own, oldest first (a day's verdict starts from the days
    before it): a pass cut short keeps what it did, and quickcheck sees each day as soon
    as it is done. Returns [] at once when another process is doing a pass.
    """
    refreshed: list[tuple[str, datetime]] = []
    written = 0  # days whose feature rows were made from their hours
    async with pool.connection() as conn:
        locked = await (await conn.execute(query("refresh_lock"))).fetchone()
        await conn.commit()
        if not locked or not locked[0]:
            return refreshed
        try:
            stale = await (await conn.execute(query("stale_days"))).fetchall()
            await conn.commit()
            for tenant_id, day, reads, changed, over, judged in stale:
                async with conn.transaction():
                    budget = {"milliseconds": str(PASS_TIMEOUT_MS)}
                    await conn.execute(query("refresh_budget"), budget)
                    params = {"tenant_id": tenant_id, "day": day, "reads": reads, "over": over}
                    fresh = changed or not judged
                    if fresh:
                        await refresh_hours(conn, params)
                    if over:
                        meters = await judge_day(conn, params, from_hours=fresh)
                        written += bool(fresh and meters)
                    else:  # its close adds hours 0-22 up as they are now, if it can
                        await conn.execute(query("add_up_day_ahead"), params)
                    await conn.execute(query("record_day"), params)
                    await conn.execute(query("drop_settled_hours"), params)
                refreshed.append((tenant_id, day))
            if written > 1:  # a backfill's worth of new rows: plans need statistics now
                await conn.execute(query("analyze_features"))
                await conn.commit()
        finally:
            # Whatever was left open, then the lock. A broken connection took both with it.
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
                await conn.execute(query("refresh_unlock"))
                await conn.commit()
    if refreshed:
        log.info("kpi features refreshed", extra={"action": "kpi_refresh", "days": len(refreshed)})
    return refreshed


async def refresh_hours(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> None:
    """One tenant-day's hour rows: the hours from the first to the last whose reads
    changed recomputed from their reads (all of them when the day's hour rows were
    dropped). Nothing to do when no hour changed."""
    counts = await (await conn.execute(query("changed_hours"), params)).fetchall()
    changed = [hour for hour, _, differs in counts if differs]
    if not changed:
        return
    hours = list(range(changed[0], changed[-1] + 1))
    reads = dict((hour, count) for hour, count, _ in counts)
    recomputed = {
        **params,
        "hours": hours,
        "reads": [reads.get(hour, 0) for hour in hours],
        "first": hours[0],
        "last": hours[-1],
    }
    await conn.execute(query("ensure_hours_partition"), params)
    await conn.execute(query("forget_day_ahead"), recomputed)
    await conn.execute(query("clear_meter_hours"), recomputed)
    await conn.execute(query("refresh_meter_hours"), recomputed)
    await conn.execute(query("record_hours"), recomputed)


def background_refresh(pool_of: Any) -> Any:
    """A cleanup context running passes every REFRESH_EVERY_S while the app runs (both
    looked up at each pass, as the tests replace them)."""
    return every(
        lambda: REFRESH_EVERY_S, "kpi_refresh", lambda pool: refresh_stale_days(pool), pool_of
    )
