"""Registering OAuth clients: exact redirect URIs over https, allowed scopes, and a
secret for confidential clients that is shown once and stored only as its keyed hash."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlmodel import Session, select

from oauth.principal import ALL_SCOPES
from server.log_config import get_logger
from server.models import OAuthClient
from server.security import token_hash
from server.settings import get_settings

logger = get_logger(__name__)

_LOOPBACK_HOSTS = {"localhost"}
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{3,64}")


class ClientError(ValueError):
    """A client registration that cannot be accepted as given."""


@dataclass(frozen=True)
class RegisteredClient:
    """A new client plus its secret in clear, which exists only in this object."""

    client: OAuthClient
    client_secret: str | None

    def to_json(self) -> dict[str, Any]:
        client = self.client
        data: dict[str, Any] = {"client_id": client.client_id}
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        data.update(
            name=client.name,
            redirect_uris=client.redirect_uri_list,
            scope=client.scope,
            public=client.is_public,
            token_endpoint_auth_method=(
                "none" if client.is_public else "client_secret_basic"
            ),
            requires_business_plan=client.requires_business_plan,
        )
        return data


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What the authorization response adds to the redirect URI (RFC 6749 §4.1.2, RFC 9207).
_RESPONSE_PARAMETERS = frozenset(
    {"code", "state", "iss", "error", "error_description", "error_uri"}
)


def validate_redirect_uri(uri: str) -> str:
    """An absolute https URI without fragment; http only for loopback in development."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ClientError(f"redirect URI {uri!r} is not a valid URI") from exc
    if not parts.netloc or not parts.hostname:
        raise ClientError(f"redirect URI {uri!r} must be absolute (scheme and host)")
    if parts.fragment or uri.endswith("#"):
        raise ClientError(f"redirect URI {uri!r} must not contain a fragment")
    if parts.username or parts.password:
        raise ClientError(f"redirect URI {uri!r} must not contain credentials")
    if "*" in uri:
        raise ClientError(
            f"redirect URI {uri!r} contains '*': redirect URIs are compared exactly, "
            "there are no wildcards; register each URI in full"
        )
    clashing = sorted(
        {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
        & _RESPONSE_PARAMETERS
    )
    if clashing:
        raise ClientError(
            f"redirect URI {uri!r} has the query parameter {clashing[0]!r}, which "
            "the authorization response adds itself"
        )
    if parts.scheme == "https":
        return uri
    dev_loopback = get_settings().is_development and _is_loopback(parts.hostname)
    if parts.scheme == "http" and dev_loopback:
        return uri
    raise ClientError(
        f"redirect URI {uri!r} must use https "
        "(http is accepted only for localhost or 127.0.0.1 in development)"
    )


def validate_scopes(scopes: Sequence[str]) -> str:
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ClientError(
            f"unknown scope {unknown[0]!r}; the scopes are {', '.join(ALL_SCOPES)}"
        )
    return " ".join(dict.fromkeys(scopes))


def create_client(
    session: Session,
    *,
    name: str,
    redirect_uris: Sequence[str],
    public: bool = False,
    scopes: Sequence[str] = ALL_SCOPES,
    requires_business_plan: bool = False,
    client_secret: str | None = None,
    client_id: str | None = None,
) -> RegisteredClient:
    """Register a client. ``client_id`` may be chosen (a Stripe App's manifest names
    its client id in advance); ``client_secret`` lets tests choose a secret (for example
    one with ``+``, ``/`` and ``=``); otherwise both are random."""
    if not name.strip():
        raise ClientError("a client needs a name")
    if not redirect_uris:
        raise ClientError("a client needs at least one redirect URI")
    uris = [validate_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
    scope = validate_scopes(scopes)
    if public and client_secret is not None:
        raise ClientError("a public client has no secret")

    if client_id is not None and not _CLIENT_ID.fullmatch(client_id):
        raise ClientError(
            f"client id {client_id!r} must be 3 to 64 letters, digits, '.', '_' or '-'"
        )
    if (
        client_id is not None
        and session.exec(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).first()
    ):
        raise ClientError(f"a client with id {client_id!r} already exists")

    secret = None if public else (client_secret or secrets.token_urlsafe(32))
    client = OAuthClient(
        client_id=client_id or "cqc_" + secrets.token_urlsafe(16),
        client_secret_hash=token_hash(secret) if secret else None,
        name=name.strip(),
        redirect_uris=json.dumps(uris),
        scope=scope,
        is_public=public,
        requires_business_plan=requires_business_plan,
    )
    session.add(client)
    session.flush()
    logger.info(
        "oauth.client_created",
        client_id=client.client_id,
        public=public,
        redirect_uri_count=len(uris),
    )
    return RegisteredClient(client, secret)
