"""Riding out a Redis failover: which errors one causes, and retrying through them.

While the primary is dead and no replica has been promoted yet, or while a client still
talks to a node that was demoted, commands fail with a connection error, a timeout,
READONLY, CLUSTERDOWN or TRYAGAIN. Each clears once the deployment has a primary again
and the client has found it: the Sentinel pool asks the sentinels when it reconnects, the
cluster client reloads its slot map. A write that was not confirmed (fewer replicas than
asked for acknowledged it, or no reply came) may have been lost with the old primary, so
it is written again; GridLens's writes are safe to repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis import exceptions as redis_errors

from gridlens.errors import GridLensError
from gridlens.metrics import Counter

log = logging.getLogger(__name__)

RETRY_FIRST_S: Final = 0.1  # first pause after a failed attempt
RETRY_CAP_S: Final = 1.0  # longest pause: a promoted primary is found within a second


class Unconfirmed(GridLensError, redis_errors.RedisError):
    """Fewer replicas than GRIDLENS_REDIS_MIN_REPLICAS acknowledged a write in time."""

    def __init__(self, replicas: int, wanted: int, reply: Any = None) -> None:
        super().__init__(
            f"only {replicas} of the {wanted} replicas GRIDLENS_REDIS_MIN_REPLICAS asks for "
            "acknowledged the write in time"
        )
        self.replicas = replicas
        self.reply = reply  # the script's own reply: what it did on the primary


FAILOVER_ERRORS: Final = (
    redis_errors.ConnectionError,  # no primary, a dead one; also LOADING (BusyLoadingError)
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a demoted primary, reached before the client noticed
    redis_errors.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN
    redis_errors.TryAgainError,
    Unconfirmed,
)

RETRIES = Counter(
    "gridlens_redis_failover_retries_total",
    "Redis calls tried again after a failover error or an unconfirmed write.",
    ["call"],
)

T = TypeVar("T")


def failover_error(error: BaseException) -> bool:
    """An error that a failover causes and that retrying clears (a wrong password, which
    redis-py counts among connection errors, is not one)."""
    if isinstance(error, redis_errors.AuthenticationError):
        return False
    if isinstance(error, FAILOVER_ERRORS):
        return True
    # A blocked read on a primary that is being demoted (Redis 7) is told UNBLOCKED.
    return isinstance(error, redis_errors.ResponseError) and str(error).startswith("UNBLOCKED")


class FailoverRetry:
    """Pauses between attempts of one call through a failover, and gives up (re-raises)
    once ``within_s`` have passed since its first failure."""

    def __init__(self, call: str, within_s: float) -> None:
        self.call = call
        self.within_s = within_s
        self.attempts = 0
        self._deadline = 0.0

    async def pause(self, error: BaseException) -> None:
        """After a failed attempt: sleep before the next, or raise ``error`` when it is not
        a failover's or the time is up."""
        now = time.monotonic()
        if self.attempts == 0:
            self._deadline = now + self.within_s
        self.attempts += 1
        delay = min(RETRY_CAP_S, RETRY_FIRST_S * 2 ** (self.attempts - 1))
        if not failover_error(error) or now + delay > self._deadline:
            raise error
        RETRIES.labels(self.call).inc()
        log.warning(
            "redis call failed; trying again",
            extra={
                "action": "redis_failover_retry",
                "call": self.call,
                "attempt": self.attempts,
                "error": str(error),
            },
        )
        await asyncio.sleep(delay)


async def through_failover(call: str, within_s: float, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``'s result, tried again through failover errors for up to ``within_s``."""
    retry = FailoverRetry(call, within_s)
    while True:
        try:
            return await attempt()
        except redis_errors.RedisError as error:
            await retry.pause(error)
