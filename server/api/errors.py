"""The error contract of the GraphQL API: every error carries ``extensions.code``.

Expected failures are :class:`ApiError` subclasses raised by resolvers; their message is
written for the client. Parse, validation and variable errors keep graphql-core's message.
Anything else is masked as ``INTERNAL_SERVER_ERROR`` and logged with its traceback.

Beside the specific ``code``, ``extensions.classification`` gives the broad class, with
Spring GraphQL's names: ``BAD_REQUEST`` when the request was refused (fix the request, the
token or the plan), ``INTERNAL_ERROR`` when the server failed. Generic clients and tools
(schemathesis among them) tell the two apart by it without knowing our codes."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors

from server.conversions import ConversionError

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
PLAN_REQUIRED = "PLAN_REQUIRED"
BAD_REQUEST = "BAD_REQUEST"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
INTERNAL = "INTERNAL_SERVER_ERROR"

REFUSED = "BAD_REQUEST"
FAILED = "INTERNAL_ERROR"

MASKED_MESSAGE = "Unexpected error; it was logged on the server."


class ApiError(Exception):
    """An expected failure: its message and code reach the client unchanged."""

    code = BAD_USER_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code}


class Unauthenticated(ApiError):
    code = UNAUTHENTICATED


class Forbidden(ApiError):
    code = FORBIDDEN


class BadUserInput(ApiError):
    code = BAD_USER_INPUT


class NotFound(ApiError):
    code = NOT_FOUND


class PlanRequired(ApiError):
    code = PLAN_REQUIRED


def from_conversion_error(error: ConversionError) -> ApiError:
    """The domain's expected failures keep their message and code."""
    api_error = ApiError(error.message)
    api_error.code = error.code
    return api_error


def is_expected(error: GraphQLError) -> bool:
    """Errors the client caused: ours, and those raised before execution starts."""
    if isinstance(error.original_error, ApiError | ConversionError):
        return True
    if error.path is not None:
        return False
    return error.original_error is None or is_variable_error(error)


def is_variable_error(error: GraphQLError) -> bool:
    """graphql-core's message for a variable that does not coerce to its type."""
    return error.path is None and error.message.startswith("Variable '$")


def code_of(error: GraphQLError) -> str:
    """The code of an error that is not masked."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if isinstance(error, GraphQLSyntaxError):
        return PARSE_FAILED
    if is_variable_error(error):
        return BAD_USER_INPUT
    return VALIDATION_FAILED


class CodedMaskErrors(MaskErrors):
    """MaskErrors that leaves client errors readable and gives every error a code."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_should_mask, error_message=MASKED_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": INTERNAL}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        for error in processed:
            code = code_of(error)
            error.extensions = {
                **(error.extensions or {}),
                "code": code,
                "classification": FAILED if code == INTERNAL else REFUSED,
            }
        return processed


def _should_mask(error: GraphQLError) -> bool:
    return not is_expected(error)


def error_body(message: str, code: str) -> dict[str, Any]:
    """A GraphQL response carrying one error, for failures outside execution."""
    extensions = {"code": code, "classification": REFUSED}
    return {"data": None, "errors": [{"message": message, "extensions": extensions}]}
