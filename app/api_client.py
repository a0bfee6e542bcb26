"""A client of the GridLens API, for the CLI's backfill, emulate and demo commands.

Publishing goes through the API, the one safe path: a 429 is honoured by waiting
what Retry-After says, never by going around a cap; so is a 503 (a server down), and
an API that does not answer is tried again, so a long emulation outlives a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp

from gridlens.apikey import key_file
from gridlens.errors import GridLensError, first_line
from gridlens.settings import Settings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 120.0  # a 25,000-meter publish takes about 10 s
MAX_WAITS: Final = 720  # × Retry-After: an hour at 5 s
UNREACHABLE_WAIT_S: Final = 5.0  # before trying again an API that did not answer
WAITED_OUT: Final = frozenset({0, 429, 503})  # 0: no answer at all


class ApiFailure(GridLensError, RuntimeError):
    """The API refused or failed a request in a way waiting does not fix."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


async def wait_ready(base_url: str, within_s: float, stop: asyncio.Event | None = None) -> bool:
    """Poll the API's /readyz until it answers 200 (True), ``within_s`` passes or ``stop``
    is set (False)."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not (stop and stop.is_set()) and time.monotonic() < deadline:
            try:
                async with session.get(f"{base_url}/readyz") as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    return False


def api_key_for(settings: Settings) -> str:
    """GRIDLENS_API_KEY, else the key `gridlens up` generated in the data dir."""
    if settings.api_key:
        return settings.api_key
    path = key_file(settings.data_dir)
    if not path.exists():
        raise ApiFailure(f"no API key: set GRIDLENS_API_KEY or start the stack once ({path})")
    return path.read_text().strip()


class ApiClient:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        base = os.environ.get("GRIDLENS_API_URL") or f"http://{host}:{settings.port}"
        return cls(base, api_key_for(settings))

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self._session.close()

    async def get(self, path: str, **query: str) -> Answer:
        async with self._session.get(f"{self.base_url}{path}", params=query) as response:
            return Answer(response.status, await response.json())

    async def publish(self, body: dict[str, Any]) -> Answer:
        """POST publish-once. A queue too deep (429), a server down (503) or an API that
        does not answer (restarting) is waited out, up to an hour, and the publish sent
        again: publishing the same readAt twice stores each read once."""
        for _ in range(MAX_WAITS):
            try:
                async with self._session.post(
                    f"{self.base_url}/api/ami/publish-once", json=body
                ) as response:
                    answer = Answer(response.status, await response.json())
                    wait_s = float(response.headers.get("Retry-After", UNREACHABLE_WAIT_S))
            except aiohttp.ClientConnectionError as error:
                answer, wait_s = Answer(0, {"error": first_line(error)}), UNREACHABLE_WAIT_S
            if answer.status == 200:
                return answer
            if answer.status not in WAITED_OUT:
                raise ApiFailure(
                    f"publish-once answered {answer.status}: {answer.body.get('error')}"
                )
            log.info(
                "publish not taken now; waiting",
                extra={
                    "action": "publish_wait",
                    "status": answer.status,
                    "retry_after_s": wait_s,
                    "error": answer.body.get("error"),
                },
            )
            await asyncio.sleep(wait_s)
        raise ApiFailure("the API did not take the publish for an hour")
