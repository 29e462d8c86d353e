"""Keyed hashing of high-entropy credentials (API keys, OAuth tokens, codes, client secrets).

They are random, so a fast keyed hash is as strong as a slow one and costs microseconds on
every API call; the slow password hash is kept for passwords only."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from server.settings import get_settings

_DEV_KEY_NAME = ".codeqr_secret_key"


def dev_key_file() -> Path:
    """Where development keeps its generated key: beside the SQLite database, so every
    command using that database (server or CLI, from any folder) hashes alike; for other
    databases, the working folder."""
    from sqlalchemy.engine import make_url

    url = make_url(get_settings().database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (
        None,
        "",
        ":memory:",
    ):
        database = Path(url.database)
        return database.with_name(f"{database.name}{_DEV_KEY_NAME}")
    return Path(_DEV_KEY_NAME)


@lru_cache(maxsize=1)
def secret_key() -> bytes:
    """``CODEQR_SECRET_KEY``; in development, a key generated once into a local file."""
    settings = get_settings()
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured.encode()
    if not settings.is_development:
        raise RuntimeError("CODEQR_SECRET_KEY must be set outside development")
    path = dev_key_file()
    if not path.exists():
        _create_key_file(path)
    return path.read_text().strip().encode()


def _create_key_file(path: Path) -> None:
    """Write a new key beside ``path`` and link it into place: a process racing us either
    wins (we read its key) or loses, and nobody ever reads a half-written file."""
    draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def token_hash(value: str) -> str:
    """HMAC-SHA-256 of ``value`` under the secret key, hex encoded (64 characters)."""
    return hmac.new(secret_key(), value.encode(), hashlib.sha256).hexdigest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
