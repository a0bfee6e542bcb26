"""A consumer's side tasks are watched: one that dies stops the consumer, never silently."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from consumer.housekeeping import Housekeeping, SideTaskDied
from consumer.worker import Consumer
from gridlens.keys import Keys
from gridlens.settings import Settings


async def test_a_dead_heartbeat_stops_the_consumer_with_an_error(
    settings: Settings,
    redis: aioredis.Redis,
    pool: AsyncConnectionPool[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    beats = 0

    async def failing_heartbeat(self: Housekeeping) -> None:
        nonlocal beats
        beats += 1
        raise ConnectionResetError("the heartbeat's socket broke")

    monkeypatch.setattr(Housekeeping, "_heartbeat", failing_heartbeat)
    stop = asyncio.Event()
    with pytest.raises(SideTaskDied, match="heartbeat"):
        await asyncio.wait_for(Consumer(settings, redis, pool, name="c-dies").run(stop), 30)
    assert beats == 1 and stop.is_set()
    died = [r for r in caplog.records if getattr(r, "action", None) == "side_task_died"]
    assert len(died) == 1 and died[0].levelno == logging.ERROR
    assert died[0].__dict__["task"] == "heartbeat"
    assert not await redis.hexists(Keys(settings.redis_namespace).consumers, "c-dies")


async def test_side_tasks_are_awaited_when_the_consumer_stops(
    settings: Settings, redis: aioredis.Redis, pool: AsyncConnectionPool[Any]
) -> None:
    stop = asyncio.Event()
    consumer = Consumer(settings, redis, pool, name="c-stops")
    running = asyncio.create_task(consumer.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(running, 30)  # no exception: a clean stop
    leftover = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and "housekeeping" in repr(task.get_coro())
    ]
    assert leftover == []
