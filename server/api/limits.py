"""Bounds on what one request may ask for, and the schema extensions enforcing them.

Extensions are given as factories (Strawberry builds one per operation); instances
would be shared between requests and are deprecated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from graphql import ASTValidationRule, ValidationContext, ValidationRule
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from server.api.errors import CodedMaskErrors
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


EXTENSIONS: list[Callable[[], SchemaExtension]] = [
    _token_limiter,
    _depth_limiter,
    _alias_limiter,
    _introspection_policy,
    CodedMaskErrors,
]
