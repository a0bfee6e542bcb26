"""``gridlens up``: the API and the consumers as supervised child processes.

A child that dies is logged and restarted after a back-off; so is a server the
stack owns (the embedded Redis or PostgreSQL), watched through its liveness and
started again from its own data. SIGINT or SIGTERM stops the children (SIGTERM,
then SIGKILL after a grace period); the caller then stops the embedded servers,
so nothing is left running.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gridlens.waits import sleep_unless

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # successive waits before a restart
STABLE_AFTER_S = 60.0  # a child that ran this long starts its back-off afresh
SERVER_CHECK_S = 0.5  # how often a watched server's liveness is checked
SUPERVISOR_PID_ENV = "GRIDLENS_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the supervisor's


class WatchedServer(Protocol):
    """A server this process owns and keeps running (an embedded Redis or PostgreSQL)."""

    name: str

    def alive(self) -> bool:
        """Its process runs; cheap enough to ask every SERVER_CHECK_S on the event loop."""
        ...

    def restart(self) -> int:
        """Start it again from its own data, reachable at the same URL; block until it
        answers and return its pid; raise when it could not be started."""
        ...


@dataclass
class Backoff:
    """The waits before successive restarts of one child or server."""

    failures: int = 0

    def after_run(self, ran_s: float) -> float:
        """The wait before the next start, after a run (or a failed start) of ``ran_s``."""
        self.failures = 0 if ran_s > STABLE_AFTER_S else self.failures + 1
        if not self.failures:
            return 0.0
        return RESTART_BACKOFF_S[min(self.failures, len(RESTART_BACKOFF_S)) - 1]


def gridlens_command(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "app", *args)


class Supervisor:
    def __init__(
        self,
        children: list[ChildSpec],
        env: Mapping[str, str],
        kill_after_s: float,
        servers: Sequence[WatchedServer] = (),
    ) -> None:
        self.children = children
        self.servers = servers
        self.env = {**env, SUPERVISOR_PID_ENV: str(os.getpid())}
        self.kill_after_s = kill_after_s
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Keep every child and server running until ``stop`` is set; then stop the
        children (the servers are the caller's to stop, after them)."""
        await asyncio.gather(
            *(self._keep_running(child, stop) for child in self.children),
            *(self._keep_serving(server, stop) for server in self.servers),
        )

    async def _keep_running(self, child: ChildSpec, stop: asyncio.Event) -> None:
        backoff = Backoff()
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
            delay = backoff.after_run(time.monotonic() - started)
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
            await sleep_unless(stop, delay)

    async def _keep_serving(self, server: WatchedServer, stop: asyncio.Event) -> None:
        """Check the server's liveness; when it has died, start it again after the back-off.

        Its clients (the children) keep their URL: they answer 503 or retry meanwhile.
        """
        backoff = Backoff()
        started = time.monotonic()
        while await sleep_unless(stop, SERVER_CHECK_S):
            if server.alive():
                continue
            delay = backoff.after_run(time.monotonic() - started)
            self.restarts += 1
            log.error(
                "server died; restarting",
                extra={"action": "server_restart", "server": server.name, "restart_in_s": delay},
            )
            if not await sleep_unless(stop, delay):
                return
            started = time.monotonic()
            try:
                pid = await asyncio.to_thread(server.restart)
            except Exception as error:  # logged; the next check finds it dead and backs off
                log.error(
                    "server did not start",
                    extra={
                        "action": "server_start_failed",
                        "server": server.name,
                        "error": str(error),
                    },
                )
                continue
            log.info(
                "server started again",
                extra={"action": "server_start", "server": server.name, "pid": pid},
            )

    async def _terminate(
        self, child: ChildSpec, process: asyncio.subprocess.Process, exited: asyncio.Future[int]
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.kill_after_s)
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
