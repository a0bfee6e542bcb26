"""The gridlens command's own sub-commands that need no server."""

from __future__ import annotations

import pytest

from app.cli import main


def test_fleet_report_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "fleet-report",
            "--tenant",
            "DEMO",
            "--meters",
            "500",
            "--feeders",
            "10",
            "--days",
            "2",
            "--start",
            "2026-03-02",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("fleet DEMO: 500 meters on 10 feeders, 2 days from 2026-03-02")
    for line in ("mean", "evening peak / 03:00 trough", "inside ANSI Range A (114–126 V)"):
        assert line in out
    assert out.count(":00   ") == 24  # one row per hour


@pytest.mark.parametrize(
    "args",
    [["--tenant", "a b"], ["--tenant", "T", "--meters", "0"], ["--tenant", "T", "--interval", "7"]],
)
def test_fleet_report_refuses_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["fleet-report", *args])
    assert raised.value.code == 2
