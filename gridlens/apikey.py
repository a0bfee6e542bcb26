"""The API key: from GRIDLENS_API_KEY, or generated once and kept in the data dir."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from gridlens.settings import Settings

KEY_FILE_NAME = "api_key"


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE_NAME


def ensure_api_key(settings: Settings) -> str:
    """The key in force: the configured one, else the stored one, else a new one."""
    if settings.api_key is not None:
        return settings.api_key
    path = key_file(settings.data_dir)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # Written whole under a temporary name, then linked into place: two processes
    # starting at once agree on the first key linked, and none reads a half file.
    temporary = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        temporary.unlink()
    return key


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented key with the expected one."""
    return hmac.compare_digest(presented.encode(), expected.encode())
