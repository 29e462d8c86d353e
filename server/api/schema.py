"""The schema: queries, mutations, subscriptions, limits and the error contract.

The exported SDL lives in graphql/schema.graphql (regenerate with ``make schema``); a test
keeps the two identical."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from server.api import objects
from server.api.errors import code_of, is_expected
from server.api.limits import EXTENSIONS
from server.api.mutations import Mutation
from server.api.queries import Query
from server.api.subscriptions import Subscription
from server.log_config import get_logger

logger = get_logger(__name__)

MAX_BIGINT = 2**63 - 1


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"BigInt must be a whole number, got {value!r}")
    if abs(value) > MAX_BIGINT:
        raise ValueError("BigInt must fit in 64 bits")
    return value


BIGINT = strawberry.scalar(
    name="BigInt",
    description="A whole number that may exceed 32 bits (amounts in minor units), "
    "sent as a JSON number; exact up to 2^53.",
    serialize=int,
    parse_value=_parse_bigint,
)


class ApiSchema(strawberry.Schema):
    """Logs expected errors briefly and unexpected ones with their traceback."""

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        for error in errors:
            if is_expected(error):
                logger.info("api.client_error", code=code_of(error), path=error.path)
            else:
                logger.error(
                    "api.unexpected_error",
                    path=error.path,
                    exc_info=error.original_error or error,
                )


schema = ApiSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[
        objects.Click,
        objects.Lead,
        objects.Sale,
        objects.Customer,
        objects.Link,
        objects.Commission,
        objects.Payout,
    ],
    extensions=EXTENSIONS,
    config=StrawberryConfig(
        disable_field_suggestions=True,
        scalar_map={objects.BigInt: BIGINT},
    ),
)
