"""Starlette requests as Authlib sees them.

Authlib's server core is synchronous and framework-neutral: it reads parameters from an
``OAuth2Request`` whose ``payload`` merges the query and the form, whose ``args`` and
``form`` are the two halves, and whose ``headers`` must stay case-insensitive (Basic
client authentication reads ``Authorization``). The form is read here, in async code,
before the request is handed to Authlib in a worker thread.

Transport: Authlib refuses to build a request whose URL is plain http, except for
``localhost`` and loopback addresses. That is exactly right for us, so
``AUTHLIB_INSECURE_TRANSPORT`` is never set, not even in tests (the test server listens
on http://127.0.0.1, which Authlib accepts as loopback). In production the service
sits behind TLS; ``codeqr serve`` trusts the proxy's ``X-Forwarded-Proto`` from
127.0.0.1, so the URL Authlib sees is https. A plain-http request from anywhere else is
answered 400 ``invalid_request`` (``oauth.routes``), never a 500."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from starlette.datastructures import FormData, Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Our forms have a handful of short fields (the longest: a 1024-character password or
# a return path). Starlette's own bounds (1000 fields of 1 MB each) would let one
# request hold a gigabyte.
MAX_FORM_FIELDS = 50
MAX_FIELD_BYTES = 16 * 1024


class FormTooLarge(ValueError):
    """A form over our bounds, or one Starlette could not parse; the message is ASCII."""


class StarlettePayload(OAuth2Payload):  # type: ignore[misc]
    """Query and form parameters together; ``datalist`` keeps repeated values."""

    def __init__(self, query: QueryParams, form: FormData) -> None:
        datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in [*query.multi_items(), *form.multi_items()]:
            if isinstance(value, str):
                datalist[key].append(value)
        self._datalist = datalist
        self._data = {key: values[0] for key, values in datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """One HTTP request, wrapped once: Authlib asks for it again from grants and
    endpoints, and gets this same object back.

    ``workspace_id`` is ours: the workspace the user picked on the consent page, saved
    with the authorization code."""

    def __init__(self, request: Request, form: FormData) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = StarlettePayload(request.query_params, form)
        self._query = request.query_params
        self._form = form
        self.workspace_id: int | None = None

    @property
    def args(self) -> QueryParams:
        return self._query

    @property
    def form(self) -> FormData:
        return self._form

    @property
    def starlette_headers(self) -> Headers:
        headers: Headers = self.headers
        return headers

    def repeated_parameters(self) -> list[str]:
        """Names sent more than once, in the query and form together (RFC 6749 §3.1)."""
        datalist: dict[str, list[Any]] = self.payload.datalist
        return sorted(name for name, values in datalist.items() if len(values) > 1)


def is_form_request(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == FORM_CONTENT_TYPE


async def read_form(request: Request) -> FormData:
    """The request's form, within ``MAX_FORM_FIELDS`` fields of ``MAX_FIELD_BYTES``
    each and without files; raises :class:`FormTooLarge` otherwise."""
    try:
        return await request.form(
            max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
    except HTTPException as exc:
        raise FormTooLarge(f"The form could not be read: {exc.detail}") from None


async def wrap(request: Request) -> StarletteOAuth2Request:
    """Read the url-encoded form (if any) and wrap the request for Authlib.

    Raises :class:`FormTooLarge` for a form over our bounds, and Authlib's
    ``InsecureTransportError`` for a plain-http URL that is not loopback (see
    ``oauth.routes`` for how both are answered)."""
    form = await read_form(request) if is_form_request(request) else FormData()
    return StarletteOAuth2Request(request, form)
