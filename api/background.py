"""Passes an API process runs in the background while it serves (cleanup contexts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

Pass = Callable[[AsyncConnectionPool[Any]], Awaitable[object]]


def every(
    period_s: Callable[[], float],
    action: str,
    run: Pass,
    pool_of: Callable[[web.Application], AsyncConnectionPool[Any]],
) -> Any:
    """A cleanup context running ``run`` on the app's pool every period_s() seconds.

    A pass that fails is logged (action ``<action>_failed``) and the next one tries again:
    whatever went wrong, the loop outlives it.
    """

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                try:
                    await run(pool_of(app))
                except Exception as error:
                    log.warning(
                        f"{action.replace('_', ' ')} failed; next pass retries",
                        extra={"action": f"{action}_failed", "error": repr(error)},
                        exc_info=not isinstance(error, psycopg.Error | TimeoutError),
                    )
                await asyncio.sleep(period_s())

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    return lifecycle
