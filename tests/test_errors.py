"""GridLens's errors share one base, and each reads on one line."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from app.api_client import ApiFailure
from app.migrate import MigrationError
from app.stack import StartupError
from consumer.housekeeping import SideTaskDied
from gridlens.entry import EntryError
from gridlens.errors import GridLensError, first_line
from gridlens.settings import SettingsError
from producer.events import EventError
from producer.publisher import Backpressure, PublishFailed
from producer.request import RequestError


@pytest.mark.parametrize(
    "error_class",
    [
        ApiError,
        ApiFailure,
        MigrationError,
        StartupError,
        SideTaskDied,
        EntryError,
        SettingsError,
        EventError,
        Backpressure,
        PublishFailed,
        RequestError,
    ],
)
def test_every_error_of_ours_has_the_one_base(error_class: type[Exception]) -> None:
    assert issubclass(error_class, GridLensError)


def test_the_first_line_of_an_error() -> None:
    assert first_line(ValueError("  first\nsecond")) == "first"
    assert first_line(TimeoutError()) == "TimeoutError"  # aiohttp's total timeout
    assert first_line(RuntimeError("\n")) == "RuntimeError"
