"""The Lua scripts of gridlens/lua/: each runs as one atomic step inside Redis.

Every script is loaded with the shared functions of lua/depth.lua before it.
redis-py sends a script by its SHA1 (EVALSHA) and loads it again if Redis lost it.
"""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript


def script(client: aioredis.Redis, name: str) -> AsyncScript:
    folder = resources.files("gridlens").joinpath("lua")
    source = folder.joinpath("depth.lua").read_text() + folder.joinpath(f"{name}.lua").read_text()
    return client.register_script(source)
