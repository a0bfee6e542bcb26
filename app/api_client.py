"""A client of the GridLens API, for the CLI's backfill, emulate and demo commands.

Publishing goes through the API, the one safe path: a 429 is honoured by waiting
what Retry-After says, never by going around a cap.
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
from gridlens.errors import GridLensError
from gridlens.settings import Settings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S: Final = 120.0  # a 25,000-meter publish takes about 10 s
MAX_BACKPRESSURE_WAITS: Final = 720  # × Retry-After: an hour at 5 s


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
        """POST publish-once; on 429 wait Retry-After and try again (bounded)."""
        for _ in range(MAX_BACKPRESSURE_WAITS):
            async with self._session.post(
                f"{self.base_url}/api/ami/publish-once", json=body
            ) as response:
                answer = Answer(response.status, await response.json())
                retry_after = float(response.headers.get("Retry-After", "5"))
            if answer.status != 429:
                if answer.status != 200:
                    raise ApiFailure(
                        f"publish-once answered {answer.status}: {answer.body.get('error')}"
                    )
                return answer
            log.info(
                "queue too deep; waiting",
                extra={
                    "action": "backpressure_wait",
                    "retry_after_s": retry_after,
                    "waiting": answer.body.get("waiting"),
                    "delayed": answer.body.get("delayed"),
                },
            )
            await asyncio.sleep(retry_after)
        raise ApiFailure("the queue stayed too deep for an hour")
