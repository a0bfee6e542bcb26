"""The one base of GridLens's own errors, and how any error reads on one line."""

from __future__ import annotations


class GridLensError(Exception):
    """An error of GridLens itself, as opposed to one of a library or the runtime."""


def first_line(error: BaseException) -> str:
    """The error's first line of text, or its type's name when it has none (as aiohttp's
    total timeout, a TimeoutError without a message)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
