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

_DEV_KEY_FILE = Path(".codeqr_secret_key")


@lru_cache(maxsize=1)
def secret_key() -> bytes:
    """``CODEQR_SECRET_KEY``; in development, a key generated once into a local file."""
    settings = get_settings()
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured.encode()
    if not settings.is_development:
        raise RuntimeError("CODEQR_SECRET_KEY must be set outside development")
    if not _DEV_KEY_FILE.exists():
        fd = os.open(_DEV_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return _DEV_KEY_FILE.read_text().strip().encode()


def token_hash(value: str) -> str:
    """HMAC-SHA-256 of ``value`` under the secret key, hex encoded (64 characters)."""
    return hmac.new(secret_key(), value.encode(), hashlib.sha256).hexdigest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}{secrets.token_urlsafe(nbytes)}"


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
