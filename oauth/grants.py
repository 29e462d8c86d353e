"""The grants we offer: authorization code with PKCE (S256 only, always required) and
refresh token with rotation and reuse detection; plus RFC 7009 revocation.

Implicit, password and client-credentials grants are never registered, so Authlib
answers them with ``unsupported_response_type`` / ``unsupported_grant_type``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedTokenTypeError,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlmodel import Session

from oauth import tokens
from server.log_config import get_logger
from server.models import OAuthClient, OAuthCode, OAuthToken, User

if TYPE_CHECKING:
    from oauth.adapters import StarletteOAuth2Request

logger = get_logger(__name__)

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def _session(grant: Any) -> Session:
    session: Session = grant.server.session
    return session


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client and every code: a challenge is required at /authorize
    (Authlib's own check only bites at the token endpoint, and only for public
    clients), ``S256`` is the only method, and a code without a stored challenge is
    never redeemed."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: Any) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send 'code_challenge' with 'code_challenge_method=S256'."
            )
        method = data.get("code_challenge_method")
        if not method:
            raise InvalidRequestError(
                "Missing 'code_challenge_method': send 'S256' (without it the method "
                "would be 'plain', which is not supported)."
            )
        if method != "S256":
            raise InvalidRequestError(
                "'code_challenge_method' must be 'S256' (upper case); no other method "
                "is supported."
            )
        if not _CHALLENGE.match(data["code_challenge"]):
            raise InvalidRequestError(
                "'code_challenge' must be 43 to 128 characters of A-Z, a-z, 0-9, '-', "
                "'.', '_' or '~': the base64url SHA-256 of the code verifier."
            )
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        code: OAuthCode = grant.request.authorization_code
        if not code.code_challenge:
            raise InvalidRequestError(
                "This code was issued without a PKCE challenge and cannot be redeemed."
            )
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(
        self, code: str, request: StarletteOAuth2Request
    ) -> None:
        user: User = request.user
        client: OAuthClient = request.client
        assert user.id is not None and request.workspace_id is not None
        data = request.payload.data
        tokens.save_code(
            _session(self),
            code=code,
            client_id=client.client_id,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            user_id=user.id,
            workspace_id=request.workspace_id,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
        )
        logger.info(
            "oauth.code_issued",
            client_id=client.client_id,
            user_id=user.id,
            workspace_id=request.workspace_id,
        )

    def query_authorization_code(
        self, code: str, client: OAuthClient
    ) -> OAuthCode | None:
        return tokens.find_code(_session(self), code, client.client_id)

    def delete_authorization_code(self, authorization_code: OAuthCode) -> None:
        """Nothing to do: the code was consumed atomically when the token was saved."""

    def authenticate_user(self, authorization_code: OAuthCode) -> User | None:
        session = _session(self)
        if not tokens.is_member(
            session, authorization_code.user_id, authorization_code.workspace_id
        ):
            return None
        return session.get(User, authorization_code.user_id)


_REUSED = (
    "The refresh token was already used once; as a precaution every token of its "
    "grant is now revoked: sign in again."
)


class RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> OAuthToken | None:
        """The pair of a usable refresh token of the calling client, else None
        (``invalid_grant``). A rotated-out token revokes its whole family."""
        session = _session(self)
        row = tokens.find_by_refresh_token(session, refresh_token)
        if row is None or not row.check_client(self.request.client):
            raise InvalidGrantError(
                "The refresh token is unknown, or was issued to another client."
            )
        if row.rotated_at is not None and row.revoked_at is None:
            revoked = tokens.revoke_family(session, row.family_id)
            logger.warning(
                "oauth.refresh_token_reused",
                client_id=row.client_id,
                family=row.family_id[:8],
                revoked_pairs=revoked,
            )
            raise InvalidGrantError(_REUSED)
        if not row.refresh_is_usable():
            raise InvalidGrantError(
                "The refresh token was revoked, or expired unused; sign in again."
            )
        if not tokens.is_member(session, row.user_id, row.workspace_id):
            raise InvalidGrantError(
                "The user is no longer a member of the token's workspace."
            )
        return row

    def authenticate_user(self, refresh_token: OAuthToken) -> User | None:
        return _session(self).get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: OAuthToken) -> None:
        """Nothing to do: the old refresh token was rotated atomically on save."""


@dataclass(frozen=True)
class FoundToken:
    """A token presented for revocation, and which half of its pair it is."""

    row: OAuthToken
    kind: Literal["access_token", "refresh_token"]

    def check_client(self, client: OAuthClient) -> bool:
        return self.row.check_client(client)


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009. Public clients revoke with their ``client_id``; revoking a refresh
    token ends the grant (every pair of its family), revoking an access token ends it
    alone. Unknown tokens are answered 200 like known ones."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request: Any, client: OAuthClient) -> None:
        """As Authlib's, with descriptions, an empty ``token`` counted as missing, and
        ``unsupported_token_type`` a 400 like every error of RFC 6749 §5.2 (RFC 7009
        §2.2.1), not Authlib's 401."""
        if not request.form.get("token"):
            raise InvalidRequestError("Missing 'token': the token to revoke.")
        hint = request.form.get("token_type_hint")
        if hint and hint not in self.SUPPORTED_TOKEN_TYPES:
            error = UnsupportedTokenTypeError()
            error.description = (
                "'token_type_hint' must be 'access_token' or 'refresh_token'."
            )
            error.status_code = 400
            raise error

    def authenticate_token(self, request: Any, client: OAuthClient) -> Any:
        """As Authlib's, saying why a token of another client is refused."""
        try:
            return super().authenticate_token(request, client)
        except InvalidGrantError as error:
            error.description = "The token was issued to another client."
            raise

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """The hint is only a hint (RFC 7009 §2.1): the token's own prefix says which
        kind it is, so one lookup suffices."""
        session = self.server.session
        if token_string.startswith(tokens.REFRESH_TOKEN_PREFIX):
            refresh = tokens.find_by_refresh_token(session, token_string)
            return FoundToken(refresh, "refresh_token") if refresh else None
        access = tokens.find_by_access_token(session, token_string)
        return FoundToken(access, "access_token") if access else None

    def revoke_token(self, token: FoundToken, request: Any) -> None:
        session = self.server.session
        if token.kind == "refresh_token":
            revoked = tokens.revoke_family(session, token.row.family_id)
        else:
            tokens.revoke_access_token(session, token.row)
            revoked = 1
        logger.info(
            "oauth.token_revoked",
            client_id=token.row.client_id,
            kind=token.kind,
            revoked_pairs=revoked,
        )
