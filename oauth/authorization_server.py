"""Authlib's authorization server, bridged to Starlette and our storage.

Authlib is synchronous: one server object is built per HTTP request, bound to one
database session, and driven from a worker thread (``run_in_threadpool``). Its
responses become Starlette responses here; a redirect answering a POST is a 303, never
Authlib's 302 (RFC 9700 §4.12), and every redirect back to the client, success or error,
names this server in ``iss`` (RFC 9207), so a client talking to several servers can tell
whose answer it holds."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from sqlmodel import Session, select
from starlette.responses import Response

from oauth import tokens
from oauth.adapters import StarletteOAuth2Request
from oauth.grants import CodeGrant, RefreshGrant, Revocation, S256CodeChallenge
from oauth.principal import ALL_SCOPES
from server.log_config import get_logger
from server.models import OAuthClient, OAuthCode, OAuthToken
from server.security import constant_time_equal
from server.settings import get_settings

logger = get_logger(__name__)

_MAX_CLIENT_ID_LENGTH = 64


def issuer() -> str:
    """This server's issuer identifier: the public URL, as the metadata states it."""
    return get_settings().public_url.rstrip("/")


class CodeQRAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, session: Session, http_method: str = "GET") -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.session = session
        # The method of the request being answered: known before any error is raised,
        # so every redirect answering a POST is a 303, early refusals included.
        self._http_method = http_method
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                tokens.new_access_token,
                tokens.new_refresh_token,
                tokens.access_token_lifetime,
            ),
        )
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)

    # --- storage --------------------------------------------------------------------

    def query_client(self, client_id: object) -> OAuthClient | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        if len(client_id) > _MAX_CLIENT_ID_LENGTH:
            return None
        return self.session.exec(
            select(OAuthClient).where(OAuthClient.client_id == client_id)
        ).first()

    def save_token(
        self, token: dict[str, Any], request: StarletteOAuth2Request
    ) -> None:
        client: OAuthClient = request.client
        if request.authorization_code is not None:
            row = self._save_code_exchange(token, client, request.authorization_code)
        else:
            row = self._save_refresh(token, client, request.refresh_token)
        logger.info(
            "oauth.token_issued",
            client_id=client.client_id,
            workspace_id=row.workspace_id,
            grant=request.payload.grant_type,
        )

    def _save_code_exchange(
        self, token: dict[str, Any], client: OAuthClient, code: OAuthCode
    ) -> OAuthToken:
        assert code.id is not None
        if not tokens.consume_code(self.session, code):
            revoked = tokens.revoke_code_tokens(self.session, code.id)
            logger.warning(
                "oauth.code_replayed", client_id=client.client_id, revoked_pairs=revoked
            )
            raise InvalidGrantError("The authorization code was already used.")
        return tokens.store_pair(
            self.session,
            token,
            client_id=client.client_id,
            user_id=code.user_id,
            workspace_id=code.workspace_id,
            code_id=code.id,
        )

    def _save_refresh(
        self, token: dict[str, Any], client: OAuthClient, old: OAuthToken
    ) -> OAuthToken:
        if not tokens.rotate(self.session, old):
            revoked = tokens.revoke_family(self.session, old.family_id)
            logger.warning(
                "oauth.refresh_token_reused",
                client_id=client.client_id,
                revoked_pairs=revoked,
            )
            raise InvalidGrantError()
        return tokens.store_pair(
            self.session,
            token,
            client_id=client.client_id,
            user_id=old.user_id,
            workspace_id=old.workspace_id,
            family_id=old.family_id,
            code_id=old.code_id,
        )

    # --- client authentication ---------------------------------------------------------

    def authenticate_client(
        self,
        request: StarletteOAuth2Request,
        methods: list[str],
        endpoint: str = "token",
    ) -> OAuthClient:
        """One authentication method per request (RFC 6749 §2.3): Basic together with
        a ``client_secret`` parameter, or with a ``client_id`` parameter naming another
        client, is ``invalid_request``; a request that sent Basic is judged by Basic
        alone, so a wrong secret never falls back to ``none``."""
        basic = _basic_credentials(request)
        if basic and not _decodable_basic(request):
            raise InvalidClientError(
                status_code=401,
                description="The Basic credentials are not base64 of UTF-8 text.",
            )
        if basic and "client_secret" in request.form:
            raise InvalidRequestError("Use one client authentication method, not two.")
        if basic and not _same_client_as_basic(request):
            raise InvalidRequestError(
                "The 'client_id' parameter names another client than the Basic "
                "credentials."
            )
        if basic:
            methods = [m for m in methods if m == "client_secret_basic"]
        try:
            client: OAuthClient = super().authenticate_client(
                request, methods, endpoint
            )
        except InvalidClientError as error:
            # Authlib's text lists method names; say what the client can fix.
            error.description = (
                "Client authentication failed: unknown client, wrong secret, or a "
                "confidential client sending no secret."
            )
            raise
        return client

    # --- the Starlette bridge -------------------------------------------------------

    def create_oauth2_request(self, request: object) -> StarletteOAuth2Request:
        if not isinstance(request, StarletteOAuth2Request):
            raise TypeError("wrap the Starlette request with oauth.adapters.wrap first")
        self._http_method = request.method
        return request

    def create_json_request(self, request: object) -> Any:
        raise NotImplementedError("dynamic client registration is not offered")

    def handle_response(
        self, status: int, body: object, headers: list[tuple[str, str]]
    ) -> Response:
        if status == 302 and self._http_method == "POST":
            status = 303
        content = json.dumps(body) if isinstance(body, dict) else str(body or "")
        response = Response(content, status_code=status)
        for name, value in headers:
            if name.lower() == "location":
                value = add_params_to_uri(value, [("iss", issuer())])
            response.headers[name] = value
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Authlib's hook for framework signals; nothing listens."""


def _basic_credentials(request: StarletteOAuth2Request) -> bool:
    """Whether the request attempted HTTP Basic (a malformed one counts: 401)."""
    header = request.headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "basic" and bool(value.strip())


def _same_client_as_basic(request: StarletteOAuth2Request) -> bool:
    """Whether a ``client_id`` parameter, if sent, names the client of the Basic
    credentials (read as Authlib reads them: percent-decoded)."""
    sent = request.form.get("client_id")
    if sent is None:
        return True
    basic_client_id, _ = extract_basic_authorization(request.headers)
    if not isinstance(sent, str) or basic_client_id is None:
        return False
    return constant_time_equal(sent, basic_client_id)


def _decodable_basic(request: StarletteOAuth2Request) -> bool:
    """Authlib decodes Basic credentials as UTF-8 and would fail with a 500."""
    value = (request.headers.get("Authorization") or "").partition(" ")[2].strip()
    try:
        base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return True
