"""HTTP routes of the authorization server: login and logout pages, the authorize
(consent) endpoint, token and revocation endpoints, and RFC 8414 metadata.

Every handler reads the request in async code, then does its database and Authlib work
in one worker-thread call with one transaction (``oauth.authorization_server``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    InvalidRequestError,
    OAuth2Error,
    UnsupportedResponseTypeError,
)
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from oauth import csrf, pages, sessions
from oauth.adapters import (
    FormTooLarge,
    StarletteOAuth2Request,
    is_form_request,
    read_form,
    wrap,
)
from oauth.authorization_server import CodeQRAuthorizationServer, issuer
from oauth.grants import CLIENT_AUTH_METHODS
from oauth.principal import ALL_SCOPES
from oauth.ratelimit import LoginLimiter, new_login_limiter
from oauth.users import authenticate, normalise_email, workspaces_of
from server.db import session_scope
from server.log_config import get_logger
from server.models import OAuthClient, User
from server.models.auth import GRANT_TYPES
from server.security import constant_time_equal

logger = get_logger(__name__)

STRIPE_DASHBOARD_ORIGIN = "https://dashboard.stripe.com"
# The Stripe App's settings view runs in a sandboxed iframe of the Dashboard, whose
# requests carry ``Origin: null``. Neither endpoint relies on cookies (no credentials
# are allowed), so answering those two origins lets the app exchange, refresh and
# revoke its tokens without letting any other site read a response. /oauth/authorize
# never answers CORS (RFC 9700 §2.6).
CORS_ALLOWED_ORIGINS = frozenset({STRIPE_DASHBOARD_ORIGIN, "null"})
LOGIN_FAILED = "The email or password is incorrect."
LOGIN_BLOCKED = "Too many failed sign-in attempts. Wait a few minutes and try again."
FORM_EXPIRED = "This form has expired. Reload the page and try again."
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Parameters a redirect cannot be trusted with when repeated: the client, where to
# send the answer, and the state to echo.
_ANCHOR_PARAMETERS = ("client_id", "redirect_uri", "state")


# --- shared helpers -------------------------------------------------------------------


def _current_user(session: Session, web: sessions.WebSession | None) -> User | None:
    if web is None or web.user_id is None or web.fingerprint is None:
        return None
    user = session.get(User, web.user_id)
    if user is None:
        return None
    expected = sessions.password_fingerprint(user.password_hash)
    return user if constant_time_equal(expected, web.fingerprint) else None


def _safe_next(value: object, default: str = "/login") -> str:
    """A local path to return to after login; anything else falls back to ``default``."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 4000:
        return default
    if value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    return default if parts.scheme or parts.netloc else value


def _see_other(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    pages.apply_security_headers(response)
    return response


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=_NO_STORE)


def _insecure_transport_page() -> Response:
    return pages.error_page(
        400,
        "Secure connection required",
        "This page must be reached over https.",
        "invalid_request",
    )


# --- login and logout -----------------------------------------------------------------


def _login_form(
    web: sessions.WebSession,
    next_path: str,
    status_code: int = 200,
    message: str | None = None,
    email: str = "",
) -> Response:
    response = pages.render(
        "login.html",
        status_code,
        csrf_token=csrf.token_for(web.sid),
        next=next_path,
        message=message,
        email=email,
    )
    sessions.write(response, web)
    return response


def _signed_in_email(web: sessions.WebSession | None) -> str | None:
    with session_scope() as session:
        user = _current_user(session, web)
        return user.email if user is not None else None


async def login_page(request: Request) -> Response:
    web = sessions.read(request)
    next_path = _safe_next(request.query_params.get("next"), default="")
    email = await run_in_threadpool(_signed_in_email, web)
    if web is not None and email is not None:
        if next_path:
            return _see_other(next_path)
        response = pages.render(
            "signed_in.html", email=email, csrf_token=csrf.token_for(web.sid)
        )
        return response
    return _login_form(web or sessions.anonymous(), next_path)


def _login_limiter(request: Request) -> LoginLimiter:
    """The application's limiter: one per app instance, so a test server starts clean."""
    limiter: LoginLimiter | None = getattr(request.app.state, "login_limiter", None)
    if limiter is None:
        limiter = new_login_limiter()
        request.app.state.login_limiter = limiter
    return limiter


def _check_credentials(email: str, password: str) -> tuple[int, str] | None:
    with session_scope() as session:
        user = authenticate(session, email, password)
        if user is None or user.id is None:
            return None
        return user.id, user.password_hash


def _form_error_page(error: FormTooLarge) -> Response:
    return pages.error_page(400, "Invalid request", str(error), "invalid_request")


async def login_submit(request: Request) -> Response:
    try:
        form = await read_form(request)
    except FormTooLarge as error:
        return _form_error_page(error)
    web = sessions.read(request)
    next_path = _safe_next(form.get("next"), default="")
    if web is None or not csrf.is_valid(web.sid, form.get(csrf.FIELD)):
        return _login_form(sessions.anonymous(), next_path, 403, FORM_EXPIRED)

    email = normalise_email(str(form.get("email") or ""))[:320]
    password = str(form.get("password") or "")
    address = request.client.host if request.client else "unknown"
    limiter = _login_limiter(request)
    if limiter.is_blocked(email, address):
        logger.warning("login.blocked")
        return _login_form(web, next_path, 429, LOGIN_BLOCKED, email)

    found = None
    if email and password:
        found = await run_in_threadpool(_check_credentials, email, password)
    if found is None:
        limiter.record_failure(email, address)
        logger.info("login.failed")
        return _login_form(web, next_path, 400, LOGIN_FAILED, email)

    user_id, password_hash = found
    limiter.record_success(email)
    logger.info("login.succeeded", user_id=user_id)
    response = _see_other(next_path or "/login")
    sessions.write(response, sessions.logged_in(user_id, password_hash))
    return response


async def logout(request: Request) -> Response:
    try:
        form = await read_form(request)
    except FormTooLarge as error:
        return _form_error_page(error)
    web = sessions.read(request)
    if web is None or not csrf.is_valid(web.sid, form.get(csrf.FIELD)):
        return pages.error_page(403, "Form expired", FORM_EXPIRED)
    response = _see_other("/login")
    sessions.clear(response)
    return response


# --- authorize ------------------------------------------------------------------------


def _validate_authorization(
    server: CodeQRAuthorizationServer, request: StarletteOAuth2Request
) -> Any:
    """The Authlib grant of a valid authorization request, or the response refusing it:
    an error page while client and redirect URI are unproven, after that a redirect to
    the client with ``error`` and the same ``state``."""
    repeated = request.repeated_parameters()
    anchors = [name for name in repeated if name in _ANCHOR_PARAMETERS]
    if anchors:
        message = f"The parameter {_label(anchors[0])} was sent more than once."
        return pages.error_page(400, "Invalid request", message, "invalid_request")

    problem = _client_problem(server, request)
    if problem is not None:
        return pages.error_page(400, "Invalid request", problem, "invalid_request")

    try:
        if repeated:
            raise InvalidRequestError(
                f"The parameter {_label(repeated[0])} was sent more than once.",
                redirect_uri=_redirect_target(server, request),
            )
        _check_response_type(request, _redirect_target(server, request))
        return server.get_consent_grant(request, end_user=None)
    except OAuth2Error as error:
        error.state = request.payload.state
        if error.redirect_uri:
            return server.handle_error_response(request, error)
        return pages.error_page(
            400, "Invalid request", error.get_error_description(), error.error
        )


def _label(name: str) -> str:
    """A parameter name fit for an ``error_description`` (printable ASCII only)."""
    if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name):
        return f"'{name}'"
    return "(a parameter with an unusual name)"


def _check_response_type(request: StarletteOAuth2Request, target: str | None) -> None:
    """Only ``code``. Checked here, because Authlib would echo the sent value in its
    error description and refuse (with a 500) any value holding a quote."""
    response_type = request.payload.response_type
    if not response_type:
        raise InvalidRequestError("Missing 'response_type'.", redirect_uri=target)
    if response_type != "code":
        raise UnsupportedResponseTypeError(
            "unsupported",
            description="Only 'response_type=code' is supported.",
            redirect_uri=target,
        )


def _client_problem(
    server: CodeQRAuthorizationServer, request: StarletteOAuth2Request
) -> str | None:
    """Why the client or the redirect URI cannot be trusted, or None."""
    client = server.query_client(request.payload.client_id)
    if client is None:
        return "The application asking for access is not registered with CodeQR."
    if _redirect_target(server, request) is None:
        return (
            "The application sent a redirect address that is not registered for it, "
            "or none while several are registered."
        )
    return None


def _redirect_target(
    server: CodeQRAuthorizationServer, request: StarletteOAuth2Request
) -> str | None:
    client = server.query_client(request.payload.client_id)
    if client is None:
        return None
    requested = request.payload.redirect_uri
    if requested is None:
        default: str | None = client.get_default_redirect_uri()
        return default
    return requested if client.check_redirect_uri(requested) else None


def _consent_page(
    session: Session,
    user: User,
    web: sessions.WebSession,
    request: StarletteOAuth2Request,
    grant: Any,
) -> Response:
    client: OAuthClient = request.client
    assert user.id is not None
    choices = workspaces_of(
        session, user.id, business_plan_only=client.requires_business_plan
    )
    no_workspace = (
        "None of your workspaces is on the Business plan or higher, which this "
        "application needs."
        if client.requires_business_plan
        else "You are not a member of any workspace."
    )
    redirect_origin = pages.origin_of(grant.redirect_uri) or ""
    return pages.render(
        "consent.html",
        form_targets=[redirect_origin] if redirect_origin else [],
        client_name=client.name,
        email=user.email,
        redirect_host=urlsplit(grant.redirect_uri).netloc,
        scopes=pages.describe_scopes(request.scope or ""),
        workspaces=choices,
        no_workspace_message=no_workspace,
        csrf_token=csrf.token_for(web.sid),
        action="/oauth/authorize?" + urlencode(list(request.args.multi_items())),
    )


def _authorize_get(
    request: StarletteOAuth2Request, web: sessions.WebSession | None, path: str
) -> Response:
    with session_scope() as session:
        server = CodeQRAuthorizationServer(session)
        grant = _validate_authorization(server, request)
        if isinstance(grant, Response):
            return grant
        user = _current_user(session, web)
        if user is None or web is None:
            return _see_other("/login?" + urlencode({"next": path}))
        return _consent_page(session, user, web, request, grant)


def _authorize_post(
    request: StarletteOAuth2Request, web: sessions.WebSession | None
) -> Response:
    form = request.form
    with session_scope() as session:
        server = CodeQRAuthorizationServer(session, http_method="POST")
        user = _current_user(session, web)
        if (
            user is None
            or web is None
            or not csrf.is_valid(web.sid, form.get(csrf.FIELD))
        ):
            return pages.error_page(403, "Form expired", FORM_EXPIRED)
        grant = _validate_authorization(server, request)
        if isinstance(grant, Response):
            return grant

        decision = form.get("decision")
        if decision == "deny":
            logger.info("oauth.consent_denied", client_id=request.payload.client_id)
            denied: Response = server.create_authorization_response(
                request, grant_user=None, grant=grant
            )
            return denied
        if decision != "allow":
            return pages.error_page(
                400, "Invalid request", "Choose Allow or Deny.", "invalid_request"
            )

        client: OAuthClient = request.client
        assert user.id is not None
        choices = workspaces_of(
            session, user.id, business_plan_only=client.requires_business_plan
        )
        chosen = next((c for c in choices if c.slug == form.get("workspace")), None)
        if chosen is None:
            return pages.error_page(
                400,
                "Choose a workspace",
                "Pick one of your workspaces that this application may use.",
                "invalid_request",
            )
        request.workspace_id = chosen.id
        granted: Response = server.create_authorization_response(
            request, grant_user=user, grant=grant
        )
        return granted


async def authorize(request: Request) -> Response:
    """GET shows the consent page (never grants); POST records the decision (303)."""
    if request.method == "POST" and not is_form_request(request):
        return pages.error_page(
            400,
            "Invalid request",
            "The consent form is sent as application/x-www-form-urlencoded.",
            "invalid_request",
        )
    try:
        oauth_request = await wrap(request)
    except InsecureTransportError:
        return _insecure_transport_page()
    except FormTooLarge as error:
        return _form_error_page(error)
    web = sessions.read(request)
    if request.method == "GET":
        path = request.url.path + ("?" + request.url.query if request.url.query else "")
        response = await run_in_threadpool(_authorize_get, oauth_request, web, path)
    else:
        response = await run_in_threadpool(_authorize_post, oauth_request, web)
    if "content-security-policy" not in response.headers:
        pages.apply_security_headers(response)
    return response


# --- token and revocation -------------------------------------------------------------


def _cors_headers(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    headers = {"Vary": "Origin"}
    if origin in CORS_ALLOWED_ORIGINS:
        headers["Access-Control-Allow-Origin"] = origin
    return headers


def _preflight(request: Request) -> Response:
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method")
    if origin not in CORS_ALLOWED_ORIGINS or method != "POST":
        return Response(status_code=403, headers={"Vary": "Origin"})
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        },
    )


async def _form_endpoint(request: Request) -> StarletteOAuth2Request | Response:
    """The wrapped request of a well-formed form POST, or the ``invalid_request``."""
    if request.url.query:
        return _oauth_error(
            400,
            "invalid_request",
            "Send the parameters in the form body, not in the query string.",
        )
    if not is_form_request(request):
        return _oauth_error(
            400,
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        )
    try:
        oauth_request = await wrap(request)
    except InsecureTransportError:
        return _oauth_error(400, "invalid_request", "OAuth requires https.")
    except FormTooLarge as error:
        return _oauth_error(400, "invalid_request", str(error))
    repeated = oauth_request.repeated_parameters()
    if repeated:
        return _oauth_error(
            400,
            "invalid_request",
            f"The parameter {_label(repeated[0])} was sent more than once.",
        )
    return oauth_request


def _issue(request: StarletteOAuth2Request) -> Response:
    with session_scope() as session:
        response: Response = CodeQRAuthorizationServer(session).create_token_response(
            request
        )
        return response


def _revoke(request: StarletteOAuth2Request) -> Response:
    with session_scope() as session:
        server = CodeQRAuthorizationServer(session)
        response: Response = server.create_endpoint_response("revocation", request)
        return response


async def token(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _preflight(request)
    prepared = await _form_endpoint(request)
    if isinstance(prepared, Response):
        response = prepared
    elif not prepared.payload.grant_type:
        response = _oauth_error(400, "invalid_request", "Missing 'grant_type'.")
    elif prepared.payload.grant_type not in GRANT_TYPES:
        response = _oauth_error(
            400,
            "unsupported_grant_type",
            "Only 'authorization_code' and 'refresh_token' are supported.",
        )
    else:
        response = await run_in_threadpool(_issue, prepared)
    response.headers.update(_cors_headers(request))
    return response


async def revoke(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _preflight(request)
    prepared = await _form_endpoint(request)
    if isinstance(prepared, Response):
        response = prepared
    else:
        response = await run_in_threadpool(_revoke, prepared)
    response.headers.update(_cors_headers(request))
    return response


# --- metadata -------------------------------------------------------------------------


def server_metadata() -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    base = issuer()
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "scopes_supported": list(ALL_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }


async def metadata(_request: Request) -> JSONResponse:
    return JSONResponse(server_metadata())


routes: list[BaseRoute] = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    Route("/oauth/token", token, methods=["POST", "OPTIONS"]),
    Route("/oauth/revoke", revoke, methods=["POST", "OPTIONS"]),
    Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
]
