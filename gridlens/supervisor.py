"""``gridlens up``: the API and the consumers as supervised child processes.

A child that dies is logged and restarted after a back-off. SIGINT or SIGTERM
stops the children (SIGTERM, then SIGKILL after a grace period); the caller then
stops the embedded servers, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # successive waits before a restart
STABLE_AFTER_S = 60.0  # a child that ran this long starts its back-off afresh
SUPERVISOR_PID_ENV = "GRIDLENS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the supervisor's


def gridlens_command(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "gridlens", *args)


class Supervisor:
    def __init__(self, children: list[ChildSpec], env: Mapping[str, str], grace_s: float) -> None:
        self.children = children
        self.env = {**env, SUPERVISOR_PID_ENV: str(os.getpid())}
        self.grace_s = grace_s
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Keep every child running until ``stop`` is set; then stop them all."""
        await asyncio.gather(*(self._keep_running(child, stop) for child in self.children))

    async def _keep_running(self, child: ChildSpec, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            process = await asyncio.create_subprocess_exec(
                *child.argv,
                env={**self.env, **child.env},
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
            )
            started = time.monotonic()
            log.info(
                "child started",
                extra={"action": "child_start", "child": child.name, "pid": process.pid},
            )
            exited = asyncio.ensure_future(process.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(child, process, exited)
                stopping.cancel()
                return
            stopping.cancel()
            if stop.is_set():
                return
            failures = 0 if time.monotonic() - started > STABLE_AFTER_S else failures + 1
            delay = (
                RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1] if failures else 0.0
            )
            self.restarts += 1
            log.error(
                "child exited; restarting",
                extra={
                    "action": "child_restart",
                    "child": child.name,
                    "pid": process.pid,
                    "returncode": process.returncode,
                    "restart_in_s": delay,
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _terminate(
        self, child: ChildSpec, process: asyncio.subprocess.Process, exited: asyncio.Future[int]
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace_s)
        except TimeoutError:
            log.warning(
                "child ignored SIGTERM; killing",
                extra={"action": "child_kill", "child": child.name},
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await exited
        log.info(
            "child stopped",
            extra={"action": "child_stop", "child": child.name, "returncode": process.returncode},
        )


def die_with_supervisor() -> None:
    """In a supervised child: get SIGTERM if the supervisor dies, even by SIGKILL."""
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(supervisor):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
