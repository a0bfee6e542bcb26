"""Which Redis errors a failover causes, and how long a call is tried again through them."""

from __future__ import annotations

import time

import pytest
from redis import exceptions as redis_errors

from gridlens.failover import FailoverRetry, Unconfirmed, failover_error, through_failover


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ConnectionError("Connection refused"),
        redis_errors.TimeoutError("Timeout reading from socket"),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.ClusterDownError("The cluster is down"),
        redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        redis_errors.ResponseError("UNBLOCKED force unblock from blocking operation"),
        Unconfirmed(0, 1),
    ],
)
def test_what_a_failover_looks_like_is_tried_again(error: Exception) -> None:
    assert failover_error(error)


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ResponseError("NOGROUP No such key or consumer group"),
        redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
        redis_errors.AuthenticationError("invalid username-password pair"),
    ],
)
def test_an_error_of_the_request_is_not(error: Exception) -> None:
    assert not failover_error(error)


async def test_a_call_is_tried_again_until_it_succeeds() -> None:
    down: list[Exception | str] = [redis_errors.ConnectionError("down")] * 3
    answers = [*down, "ok"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await through_failover("test", 5.0, call) == "ok"


async def test_a_failover_that_outlasts_the_timeout_raises_its_error() -> None:
    retry = FailoverRetry("test", within_s=0.5)
    started = time.monotonic()
    with pytest.raises(redis_errors.ConnectionError, match="still down"):
        while True:
            await retry.pause(redis_errors.ConnectionError("still down"))
    assert 0.2 < time.monotonic() - started <= 0.6
    assert retry.attempts > 2


async def test_an_error_that_is_not_a_failovers_is_raised_at_once() -> None:
    retry = FailoverRetry("test", within_s=30.0)
    with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
        await retry.pause(redis_errors.ResponseError("WRONGTYPE wrong kind"))
    assert retry.attempts == 1
