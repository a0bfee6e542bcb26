"""Schemathesis hooks for tests/test_contract_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

One check of our own beside schemathesis's: a request the API rejects changes
nothing, no stream entry written and no event stored or deleted. The state is read
just before each call and compared after it (the run uses one worker).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
import redis
import schemathesis

from gridlens.keys import Keys

_before: dict[str, Any] = {}


def _state() -> tuple[Any, ...]:
    keys = Keys(os.environ["GRIDLENS_REDIS_NAMESPACE"])
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
        try:
            last_entry = client.xinfo_stream(keys.stream)["last-generated-id"]
        except redis.ResponseError:  # no stream yet
            last_entry = None
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        events = conn.execute(
            b"SELECT count(*), coalesce(max(event_id), 0) FROM ami_events"
        ).fetchone()
    return last_entry, events


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    _before["state"] = _state()


@schemathesis.check
def rejected_request_changes_nothing(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400 or "state" not in _before:
        return
    after = _state()
    if after != _before["state"]:
        raise AssertionError(
            f"a request answered {response.status_code} changed the state: "
            f"(last stream entry, (events, last event id)) {_before['state']} -> {after}"
        )
