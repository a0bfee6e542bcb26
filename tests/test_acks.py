"""Coalesced acknowledgements (consumer/acks.py): pure logic; test_consumer.py covers Redis."""

from __future__ import annotations

import asyncio

import pytest

from consumer.acks import Acknowledgements
from gridlens.scripts import QueueDepth


class Recorder:
    """An acknowledging call that holds each round trip until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, entry_ids: list[str], inserted: int) -> QueueDepth:
        self.calls.append((entry_ids, inserted))
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return QueueDepth(waiting=len(self.calls), pending=0, delayed=0, delayed_reads=0)


async def test_jobs_that_commit_while_a_call_is_out_go_together_in_the_next() -> None:
    call = Recorder()
    acks = Acknowledgements(call)
    first = acks.acknowledge("1-0", 500)
    await asyncio.sleep(0)  # the first call goes out alone
    later = [acks.acknowledge(f"{n}-0", 500) for n in (2, 3, 4)]
    call.release.set()
    depths = await asyncio.gather(first, *later)
    assert call.calls == [(["1-0"], 500), (["2-0", "3-0", "4-0"], 1500)]
    assert [depth.waiting for depth in depths] == [1, 2, 2, 2]


async def test_an_idle_consumer_acknowledges_each_job_at_once() -> None:
    call = Recorder()
    call.release.set()
    acks = Acknowledgements(call)
    for n in range(3):
        await acks.acknowledge(f"{n}-0", 0)
    assert call.calls == [(["0-0"], 0), (["1-0"], 0), (["2-0"], 0)]


async def test_a_failed_call_fails_each_of_its_jobs_and_the_next_call_still_goes() -> None:
    call = Recorder()
    call.error = ConnectionError("Redis went away")
    acks = Acknowledgements(call)
    failed = [acks.acknowledge(f"{n}-0", 500) for n in range(2)]
    call.release.set()
    for future in failed:
        with pytest.raises(ConnectionError):
            await future
    call.error = None
    assert (await acks.acknowledge("9-0", 500)).waiting == 2


async def test_a_busy_consumer_gathers_acknowledgements_for_its_window() -> None:
    call = Recorder()
    call.release.set()
    acks = Acknowledgements(call, gather=lambda: 0.02)
    first = acks.acknowledge("1-0", 500)
    await asyncio.sleep(0.005)  # within the window: goes with the first
    second = acks.acknowledge("2-0", 500)
    await asyncio.gather(first, second)
    assert call.calls == [(["1-0", "2-0"], 1000)]
