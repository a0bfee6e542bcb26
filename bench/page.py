"""Live page: what its polling costs the API at the rate cap.

A stack of its own (``bench/stack.py``) and ``gridlens emulate`` publishing a 25,000-meter
fleet back to back at 2,500 reads/s, as in the soak. After a warm-up, phases of PHASE_S
seconds alternate, ROUNDS times: no page open, then the page (GET /) open in Debian's
headless Chromium, driven by Playwright. For each phase: the API process's CPU (user +
system, from /proc) as a share of one core, the stack's PostgreSQL's, the reads enqueued per
second (the API's own rates), and the requests the page made. Target: the page adds < 1% of
a core to the API. ``python -m bench page``; needs ``make tools`` (chromium).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import time
from dataclasses import dataclass

import aiohttp
from playwright.async_api import Browser, Request, async_playwright

from bench.procstat import cpu_seconds
from bench.soak import EMULATE_ARGS, end_emulate, start_emulate
from bench.stack import Stack, running_stack

TENANT = "PAGE_TENANT"
WARMUP_S = 60.0  # emulate's first publishes; the API's pools and caches warm
PHASE_S = 60.0
ROUNDS = 4
TARGET_SHARE = 0.01  # of a core


@dataclass(frozen=True)
class Phase:
    page_open: bool
    api_share: float  # of one core
    postgres_share: float
    enqueued_per_s: float
    page_requests: int


def _cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of those of ``pids`` still running."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # exited meanwhile
            seconds[pid] = cpu_seconds(pid)
    return seconds


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between the two readings by the processes alive at both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


async def _phase(stack: Stack, browser: Browser | None) -> Phase:
    roles = stack.processes()
    api, postgres = roles["api"], roles.get("postgres", [])
    requests: list[Request] = []
    context = None
    if browser is not None:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        page.on("request", lambda request: requests.append(request))
        await page.goto(f"{stack.base}/")
    api_before, postgres_before = _cpu(api), _cpu(postgres)
    started = time.monotonic()
    await asyncio.sleep(PHASE_S)
    elapsed = time.monotonic() - started
    api_used, postgres_used = _used(api_before, _cpu(api)), _used(postgres_before, _cpu(postgres))
    if context is not None:
        await context.close()
    seconds = int(PHASE_S) - 1
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.base}/api/ami/scale/rates?seconds={seconds}") as response,
    ):
        rates = await response.json()
    return Phase(
        page_open=browser is not None,
        api_share=api_used / elapsed,
        postgres_share=postgres_used / elapsed,
        enqueued_per_s=sum(rates["enqueued"]) / seconds,
        page_requests=len(requests),
    )


async def _phases(stack: Stack, chromium: str) -> list[Phase]:
    phases = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        try:
            for round_ in range(1, ROUNDS + 1):
                for open_ in (False, True):
                    phase = await _phase(stack, browser if open_ else None)
                    phases.append(phase)
                    print(
                        f"  round {round_}, page {'open  ' if open_ else 'closed'}:"
                        f" API {100 * phase.api_share:5.2f}% of a core,"
                        f" PostgreSQL {100 * phase.postgres_share:5.2f}%,"
                        f" {phase.enqueued_per_s:,.0f} reads/s enqueued,"
                        f" {phase.page_requests} page requests",
                        flush=True,
                    )
        finally:
            await browser.close()
    return phases


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("bench page: skipped, chromium not found (`make tools` installs it)")
        return
    with running_stack(consumers=2, name="page") as stack:
        print(
            f"page: gridlens emulate --tenant {TENANT} {' '.join(EMULATE_ARGS)};"
            f" {WARMUP_S:g} s of warm-up, then {ROUNDS} rounds of {PHASE_S:g} s without the"
            f" page and {PHASE_S:g} s with it open; stack at {stack.base}",
            flush=True,
        )
        emulate = start_emulate(stack, TENANT)
        try:
            time.sleep(WARMUP_S)
            phases = asyncio.run(_phases(stack, chromium))
        finally:
            end_emulate(emulate)
    closed = [phase.api_share for phase in phases if not phase.page_open]
    opened = [phase.api_share for phase in phases if phase.page_open]
    added = statistics.mean(opened) - statistics.mean(closed)
    pg_added = statistics.mean(
        phase.postgres_share for phase in phases if phase.page_open
    ) - statistics.mean(phase.postgres_share for phase in phases if not phase.page_open)
    requests_per_s = statistics.mean(p.page_requests for p in phases if p.page_open) / PHASE_S
    print(
        f"== API CPU at the cap: {100 * statistics.mean(closed):.2f}% of a core without the"
        f" page, {100 * statistics.mean(opened):.2f}% with it open: the page adds"
        f" {100 * added:.2f}% (target < {100 * TARGET_SHARE:g}%;"
        f" {'met' if added < TARGET_SHARE else 'MISSED'}); PostgreSQL {100 * pg_added:+.2f}%;"
        f" {requests_per_s:.1f} requests/s from the page"
    )
