"""Events in PostgreSQL (table ami_events): the emulator's ground truth."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gridlens.sqlfiles import query
from producer.events import Event, EventType


def _event(row: tuple[Any, ...]) -> Event:
    event_id, tenant_id, event_type, feeder_id, starts_at, ends_at, fraction, params = row
    return Event(
        event_id=event_id,
        tenant_id=tenant_id,
        event_type=EventType(event_type),
        feeder_id=feeder_id,
        starts_at=starts_at,
        ends_at=ends_at,
        fraction=fraction,
        params=params,
    )


async def create_event(pool: AsyncConnectionPool[Any], event: Event) -> Event:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("insert_event"),
            {
                "tenant_id": event.tenant_id,
                "event_type": event.event_type.value,
                "feeder_id": event.feeder_id,
                "starts_at": event.starts_at,
                "ends_at": event.ends_at,
                "fraction": event.fraction,
                "params": Jsonb(dict(event.params)),
            },
        )
        row = await cursor.fetchone()
    assert row is not None
    return dataclasses.replace(event, event_id=row[0])


async def list_events(pool: AsyncConnectionPool[Any], tenant_id: str) -> list[Event]:
    async with pool.connection() as conn:
        cursor = await conn.execute(query("list_events"), {"tenant_id": tenant_id})
        return [_event(row) for row in await cursor.fetchall()]


async def active_events(
    pool: AsyncConnectionPool[Any], tenant_id: str, read_at: datetime, interval_minutes: int = 15
) -> list[Event]:
    """The tenant's events in force at ``read_at``, read afresh (every API process agrees),
    and those a buffered outage's missed reads met, when one ended in the interval before."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            query("active_events"),
            {"tenant_id": tenant_id, "read_at": read_at, "interval_minutes": interval_minutes},
        )
        return [_event(row) for row in await cursor.fetchall()]


async def delete_event(pool: AsyncConnectionPool[Any], event_id: int) -> bool:
    async with pool.connection() as conn:
        cursor = await conn.execute(query("delete_event"), {"event_id": event_id})
        return await cursor.fetchone() is not None
