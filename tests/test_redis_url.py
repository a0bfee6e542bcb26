"""REDIS_URL's three forms: one server, a primary found through Sentinel, a cluster."""

from __future__ import annotations

import pytest

from gridlens.redis_url import RedisMode, RedisUrlError, parse_redis_url


def test_a_server_url_is_left_to_redis_py() -> None:
    target = parse_redis_url("rediss://:pw@cache:6380/2")
    assert (target.mode, target.tls, target.url) == (
        RedisMode.SERVER,
        True,
        "rediss://:pw@cache:6380/2",
    )


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    target = parse_redis_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/grid%20lens/3"
        "?sentinel_password=sp"
    )
    assert target.mode is RedisMode.SENTINEL and not target.tls
    assert target.hosts == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381))
    assert (target.service, target.db) == ("grid lens", 3)
    assert (target.username, target.password, target.sentinel_password) == ("app", "p@ss", "sp")


def test_a_cluster_url_names_its_startup_nodes() -> None:
    target = parse_redis_url("rediss+cluster://:pw@cfg.example:7000,10.0.0.2")
    assert (target.mode, target.tls, target.password) == (RedisMode.CLUSTER, True, "pw")
    assert target.hosts == (("cfg.example", 7000), ("10.0.0.2", 6379))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://x", "REDIS_URL must start with one of"),
        ("redis+sentinel://s1:26379", "a Sentinel REDIS_URL ends in /<service name>"),
        ("redis+sentinel://s1/gl/0/extra", "a Sentinel REDIS_URL ends in /<service name>"),
        ("redis+sentinel://s1/gl/zero", "REDIS_URL database 'zero' is not a number"),
        ("redis+sentinel://:pw@/gl", "REDIS_URL names no host of the sentinel"),
        ("redis+cluster://n1:70x0", "REDIS_URL port '70x0' is not a number"),
        ("redis+cluster://n1:7000/1", "a Redis Cluster has only database 0"),
    ],
)
def test_a_url_that_names_no_deployment_says_why(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message):
        parse_redis_url(url)
