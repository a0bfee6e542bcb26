"""The three forms of REDIS_URL: one server, a Sentinel-monitored primary, a cluster.

* ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` for a
  socket): one server, as redis-py reads it.
* ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]``
  (``rediss+sentinel://`` for TLS): the sentinels, and the name of the primary they
  monitor. The password is the data nodes'; the sentinels' own, if they have one, is the
  ``sentinel_password`` query parameter.
* ``redis+cluster://[[user]:password@]host:port[,host:port…]`` (``rediss+cluster://``):
  startup nodes of a Redis Cluster, or the one configuration endpoint of a managed
  cluster-mode service.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final
from urllib.parse import parse_qs, unquote

from gridlens.errors import GridLensError

DEFAULT_SENTINEL_PORT: Final = 26379
DEFAULT_REDIS_PORT: Final = 6379


class RedisUrlError(GridLensError, ValueError):
    """A REDIS_URL that names no usable deployment."""


class RedisMode(Enum):
    SERVER = "server"
    """One server (or a managed primary endpoint that fails over behind one address)."""
    SENTINEL = "sentinel"
    """A primary found through Sentinel, followed when the sentinels promote a replica."""
    CLUSTER = "cluster"
    """A Redis Cluster: every GridLens key shares one hash tag, so one slot serves all."""


SCHEMES: Final = {
    "redis": (RedisMode.SERVER, False),
    "rediss": (RedisMode.SERVER, True),
    "unix": (RedisMode.SERVER, False),
    "redis+sentinel": (RedisMode.SENTINEL, False),
    "rediss+sentinel": (RedisMode.SENTINEL, True),
    "redis+cluster": (RedisMode.CLUSTER, False),
    "rediss+cluster": (RedisMode.CLUSTER, True),
}


@dataclass(frozen=True)
class RedisTarget:
    """Where a deployment's Redis is, read from REDIS_URL."""

    mode: RedisMode
    url: str  # as given
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()  # sentinels or cluster startup nodes
    service: str = ""  # the sentinels' name of the primary
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_redis_url(url: str) -> RedisTarget:
    """The deployment a REDIS_URL names; RedisUrlError says what is wrong with it."""
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES or not rest:
        raise RedisUrlError(f"REDIS_URL must start with one of {', '.join(sorted(SCHEMES))}://")
    mode, tls = SCHEMES[scheme]
    if mode is RedisMode.SERVER:
        return RedisTarget(mode, url, tls)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    credentials, _, host_list = netloc.rpartition("@")
    username, password = _credentials(credentials)
    default_port = DEFAULT_SENTINEL_PORT if mode is RedisMode.SENTINEL else DEFAULT_REDIS_PORT
    hosts = tuple(_host(item, default_port) for item in host_list.split(",") if item)
    if not hosts:
        raise RedisUrlError(f"REDIS_URL names no host of the {mode.value}")
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    parts = [part for part in path.split("/") if part]
    if mode is RedisMode.CLUSTER:
        if parts and parts != ["0"]:
            raise RedisUrlError("a Redis Cluster has only database 0")
        return RedisTarget(mode, url, tls, hosts, username=username, password=password)
    if not parts or len(parts) > 2:
        raise RedisUrlError("a Sentinel REDIS_URL ends in /<service name>[/<db>]")
    return RedisTarget(
        mode,
        url,
        tls,
        hosts,
        service=unquote(parts[0]),
        db=_integer(parts[1], "database") if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password"),
    )


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, colon, password = text.partition(":")
    return unquote(user) or None, unquote(password) if colon else None


def _host(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise RedisUrlError(f"REDIS_URL host {item!r} has no name")
    return host, _integer(port, "port") if port else default_port


def _integer(text: str, what: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"REDIS_URL {what} {text!r} is not a number")
    return int(text)
