"""The Lua scripts of gridlens/lua/: each runs as one atomic step inside Redis.

Every script is loaded with the shared functions of lua/depth.lua before it.
redis-py sends a script by its SHA1 (EVALSHA) and loads it again if Redis lost it.
"""

from __future__ import annotations

import functools
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def script(client: aioredis.Redis, name: str) -> AsyncScript:
    return client.register_script(_source(name))


@functools.cache
def _source(name: str) -> str:
    folder = resources.files("gridlens").joinpath("lua")
    return folder.joinpath("depth.lua").read_text() + folder.joinpath(f"{name}.lua").read_text()
