"""Bounds on what one request may ask for, and the schema extensions enforcing them.

Extensions are given as factories (Strawberry builds one per operation); instances
would be shared between requests and are deprecated."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

from graphql import (
    ASTValidationRule,
    GraphQLError,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    visit,
)
from graphql.language import Visitor
from starlette.websockets import WebSocket
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.types.graphql import OperationType

from server.api.errors import BAD_REQUEST, BAD_USER_INPUT, CodedMaskErrors
from server.settings import get_settings

MAX_DEPTH = 8
MAX_TOKENS = 2000
MAX_ALIASES = 15
MAX_BODY_BYTES = 64 * 1024
MAX_SUBSCRIPTIONS_PER_CONNECTION = 10
CONNECTION_INIT_TIMEOUT = timedelta(seconds=10)
# How often a long-lived socket re-checks its token (revoked keys end the socket too).
TOKEN_RECHECK_SECONDS = 60.0


class FragmentSafeDepthLimiter(QueryDepthLimiter):
    """QueryDepthLimiter that tolerates a spread of an unknown fragment: Strawberry's rule
    raises KeyError on one (an unmasked, uncoded error); graphql-core's
    KnownFragmentNamesRule reports it properly, so the depth is simply not measured."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(max_depth=max_depth)
        self.validation_rules = [_tolerant(rule) for rule in self.validation_rules]


def _tolerant(rule: type[ASTValidationRule]) -> type[ASTValidationRule]:
    class Tolerant(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            try:
                super().__init__(context)
            except KeyError:
                ValidationRule.__init__(self, context)

    return Tolerant


def _depth_limiter() -> SchemaExtension:
    return FragmentSafeDepthLimiter(max_depth=MAX_DEPTH)


def _token_limiter() -> SchemaExtension:
    return MaxTokensLimiter(max_token_count=MAX_TOKENS)


def _alias_limiter() -> SchemaExtension:
    return MaxAliasesLimiter(max_alias_count=MAX_ALIASES)


def _introspection_policy() -> SchemaExtension:
    """No introspection in production: clients use the published graphql/schema.graphql."""
    if get_settings().environment == "production":
        return DisableIntrospection()
    return SchemaExtension()


class StorableText(SchemaExtension):
    """Refuses, before validation, any string argument or variable holding a NUL or an
    unpaired surrogate: no store can hold them (PostgreSQL text refuses NUL, UTF-8
    refuses surrogates), so they are the client's error, not a masked server one."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        problem = _unstorable_variable(context.variables or {})
        if problem is None and document is not None:
            problem = _unstorable_literal(document)
        if problem is not None:
            context.pre_execution_errors = [
                GraphQLError(
                    f"{problem} holds a NUL character or an unpaired surrogate; "
                    "send text without them.",
                    extensions={"code": BAD_USER_INPUT},
                )
            ]
        yield


def _is_storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_variable(value: object, name: str = "") -> str | None:
    """The name of the first variable (or part of one) that no store can hold."""
    if isinstance(value, str):
        return None if _is_storable(value) else f"Variable '${name}'"
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{name}.{key}" if name else str(key)
            found = _unstorable_variable(item, path)
            if found is not None or not _is_storable(str(key)):
                return found or f"Variable '${path}'"
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable_variable(item, f"{name}[{index}]")
            if found is not None:
                return found
    return None


class _LiteralFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: str | None = None

    def enter_string_value(self, node: StringValueNode, *_: object) -> None:
        if self.found is None and not _is_storable(node.value):
            line = node.loc.source.get_location(node.loc.start).line if node.loc else 0
            self.found = f"The string on line {line}"


def _unstorable_literal(document: object) -> str | None:
    finder = _LiteralFinder()
    visit(document, finder)  # type: ignore[arg-type]
    return finder.found


class SubscriptionsOverWebSocket(SchemaExtension):
    """A subscription sent over HTTP is refused with a message saying where it goes
    (Strawberry would run it and fail on the stream it cannot send)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        request = getattr(context.context, "request", None)
        if context.operation_type is OperationType.SUBSCRIPTION and not isinstance(
            request, WebSocket
        ):
            context.pre_execution_errors = [
                GraphQLError(
                    "Subscriptions run over WebSocket (graphql-transport-ws) at "
                    "/graphql; over HTTP send queries and mutations.",
                    extensions={"code": BAD_REQUEST},
                )
            ]
        yield


_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class NoSuggestionsInProduction(SchemaExtension):
    """Messages without "Did you mean …?" in production: field suggestions are off in
    the schema config, but graphql-core also suggests input fields, arguments, types and
    enum values (in validation, and when it coerces variables), which would describe a
    schema whose introspection is off."""

    def on_operation(self) -> Iterator[None]:
        yield
        if get_settings().environment != "production":
            return
        context = self.execution_context
        result_errors = context.result.errors if context.result else None
        for error in [*(context.pre_execution_errors or []), *(result_errors or [])]:
            error.message = _SUGGESTION.sub("", error.message)


EXTENSIONS: list[Callable[[], SchemaExtension]] = [
    StorableText,
    SubscriptionsOverWebSocket,
    NoSuggestionsInProduction,
    _token_limiter,
    _depth_limiter,
    _alias_limiter,
    _introspection_policy,
    CodedMaskErrors,
]
