"""Structured logging: key/value fields, one logger per module, no secrets.

structlog renders stdlib records too, so library loggers (uvicorn, authlib) come out in the
same shape. Any field whose name looks like a credential is replaced before rendering."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

_SECRET_FIELD_HINTS = (
    "secret",
    "token",
    "password",
    "signature",
    "authorization",
    "cookie",
)


def _redact(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event):
        if _is_secret_field(key):
            event[key] = "[redacted]"
    return event


@lru_cache(maxsize=4096)
def _is_secret_field(key: str) -> bool:
    # Field names come from the code: a handful, each decided once.
    lowered = key.lower()
    return any(hint in lowered for hint in _SECRET_FIELD_HINTS)


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False,
            # Plain tracebacks: rich's default prints every frame's local variables
            # (a token among them) and takes seconds on a deep SQLAlchemy stack.
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        # Events below the logger's level are dropped before any processor runs.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared, processor=renderer
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Authlib logs request details at DEBUG; keep it above that.
    logging.getLogger("authlib").setLevel(max(logging.INFO, root.level))
    # uvicorn's access log prints full paths with query strings (OAuth codes, states).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request with its full URL (query strings can carry codes).
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
