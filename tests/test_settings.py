"""Settings from the environment: defaults, validation, caps that only go down."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridlens.settings import (
    DEFAULT_EV_SHARE,
    DEFAULT_PV_SHARE,
    HARD_MAX_READS_PER_SECOND,
    Settings,
    SettingsError,
    redact_url,
)


def test_defaults_follow_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.redis_url is None
    assert (settings.host, settings.port, settings.consumers) == ("127.0.0.1", 5000, 2)
    assert settings.data_dir == Path(".gridlens").resolve()
    assert settings.auth_reads is False
    assert settings.caps.reads_per_second == HARD_MAX_READS_PER_SECOND
    assert settings.caps.batch_size == 500
    assert settings.caps.meter_count == 25_000
    assert settings.caps.jobs_per_publish == 200
    assert settings.caps.queue_depth == 500
    assert settings.retention_days is None  # every read kept


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@db:5432/x",
            "REDIS_URL": "rediss://:secret@cache:6380/0",
            "GRIDLENS_PORT": "8080",
            "GRIDLENS_CONSUMERS": "4",
            "GRIDLENS_AUTH_READS": "1",
            "GRIDLENS_MAX_READS_PER_SECOND": "1000",
            "GRIDLENS_RETENTION_DAYS": "45",
        }
    )
    assert settings.retention_days == 45
    assert settings.redis_url == "rediss://:secret@cache:6380/0"
    assert (settings.port, settings.consumers, settings.auth_reads) == (8080, 4, True)
    assert settings.caps.reads_per_second == 1000


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRIDLENS_PORT", "http", "GRIDLENS_PORT='http' is not an integer"),
        ("GRIDLENS_PORT", "70000", "GRIDLENS_PORT=70000 is outside 1..65535"),
        ("GRIDLENS_CONSUMERS", "-1", "GRIDLENS_CONSUMERS=-1 is outside 0..64"),
        ("GRIDLENS_AUTH_READS", "maybe", "GRIDLENS_AUTH_READS='maybe' is not a boolean"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL must be a postgresql:// URL or a libpq"),
        ("REDIS_URL", "http://x", "REDIS_URL='http://x': REDIS_URL must start with one of"),
        ("REDIS_URL", "redis+sentinel://:pw@s1", "REDIS_URL='redis+sentinel://:***@s1': a Sent"),
        ("GRIDLENS_REDIS_MIN_REPLICAS", "-1", "GRIDLENS_REDIS_MIN_REPLICAS=-1 is outside 0..16"),
        ("GRIDLENS_RETENTION_DAYS", "0", "GRIDLENS_RETENTION_DAYS=0 is outside 1..36500"),
        ("GRIDLENS_RETENTION_DAYS", "a week", "GRIDLENS_RETENTION_DAYS='a week' is not an integer"),
        ("GRIDLENS_API_KEY", "short", "GRIDLENS_API_KEY is too short"),
        ("GRIDLENS_REDIS_NAMESPACE", "a b", "GRIDLENS_REDIS_NAMESPACE='a b' must match"),
    ],
)
def test_an_invalid_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    "name",
    [
        "GRIDLENS_MAX_READS_PER_SECOND",
        "GRIDLENS_MAX_BATCH_SIZE",
        "GRIDLENS_MAX_METERS",
        "GRIDLENS_MAX_JOBS_PER_PUBLISH",
        "GRIDLENS_MAX_QUEUE_DEPTH",
    ],
)
def test_a_safety_cap_can_be_lowered_but_never_raised(name: str) -> None:
    assert Settings.from_env({name: "10"}) is not None
    with pytest.raises(SettingsError, match="may be lowered, never raised"):
        Settings.from_env({name: "999999"})
    with pytest.raises(SettingsError, match="outside"):
        Settings.from_env({name: "0"})


def test_redacted_urls_hide_only_the_password() -> None:
    assert redact_url("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("postgresql://app:pw@db/x") == "postgresql://app:***@db/x"
    assert redact_url("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
    assert (
        redact_url("postgresql://app:pw@db1:5432,db2:5432/x?target_session_attrs=read-write")
        == "postgresql://app:***@db1:5432,db2:5432/x?target_session_attrs=read-write"
    )
    assert (
        redact_url("host=db1,db2 user=app password=pw dbname=x")
        == "host=db1,db2 user=app password=*** dbname=x"
    )
    assert (
        redact_url("redis+sentinel://:pw@s1:26379,s2/gl?sentinel_password=sp")
        == "redis+sentinel://:***@s1:26379,s2/gl?sentinel_password=***"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db1:5432,db2:5432/gridlens?target_session_attrs=read-write",
        "host=db1,db2 port=5432,5432 dbname=gridlens target_session_attrs=read-write",
    ],
)
def test_a_database_url_may_name_several_hosts(url: str) -> None:
    assert Settings.from_env({"DATABASE_URL": url}).database_url == url


def test_cli_reports_a_bad_setting_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import main

    monkeypatch.setenv("GRIDLENS_PORT", "nope")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err == "gridlens: invalid setting: GRIDLENS_PORT='nope' is not an integer\n"


def test_pv_and_ev_shares_default_to_the_documented_figures() -> None:
    mix = Settings.from_env({}).mix
    assert (mix.pv_share, mix.ev_share) == (DEFAULT_PV_SHARE, DEFAULT_EV_SHARE) == (0.04, 0.02)
    assert mix.for_tenant("ANY") == (0.04, 0.02)


def test_pv_and_ev_shares_are_set_per_deployment_and_per_tenant() -> None:
    mix = Settings.from_env(
        {
            "GRIDLENS_PV_SHARE": "0.1",
            "GRIDLENS_EV_SHARE": "0",
            "GRIDLENS_TENANT_SHARES": "SUNNY=0.35/0.1, RURAL_CO=0.02/0.01",
        }
    ).mix
    assert mix.for_tenant("OTHER") == (0.1, 0.0)
    assert mix.for_tenant("SUNNY") == (0.35, 0.1)
    assert mix.for_tenant("RURAL_CO") == (0.02, 0.01)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRIDLENS_PV_SHARE", "lots", "GRIDLENS_PV_SHARE='lots' is not a number"),
        ("GRIDLENS_EV_SHARE", "1.5", "GRIDLENS_EV_SHARE=1.5 is outside [0, 1]"),
        ("GRIDLENS_TENANT_SHARES", "SUNNY=0.3", "GRIDLENS_TENANT_SHARES: 'SUNNY=0.3' is not"),
        ("GRIDLENS_TENANT_SHARES", "SUNNY=2/0", "GRIDLENS_TENANT_SHARES: 'SUNNY=2/0' is not"),
        ("GRIDLENS_TENANT_SHARES", "BAD-T=0.1/0", "GRIDLENS_TENANT_SHARES: 'BAD-T=0.1/0'"),
    ],
)
def test_a_bad_share_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(message)
