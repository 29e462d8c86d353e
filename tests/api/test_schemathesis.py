"""Schemathesis fuzzes every root field in-process with a valid API key: whatever it
generates, the answer is a client error or data, never a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from tests.api.conftest import add_click, add_customer, add_lead, add_sale, make_tenant

TOKEN_KEY = "codeqr_token"


@pytest.fixture
def graphql_schema(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    from server.app import create_app
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CODEQR_WORKER_ENABLED", "false")
    reset_process_state()
    tenant = make_tenant("acme")
    customer = add_customer(tenant, "user_1", click_id=add_click(tenant))
    add_lead(tenant, customer)
    add_sale(tenant, customer, 1000)
    headers = {"Authorization": f"Bearer {tenant.token}"}
    loaded = schemathesis.graphql.from_asgi("/graphql", create_app(), headers=headers)
    loaded.config.headers = headers
    yield loaded
    shutdown_lifespans()


schema = schemathesis.pytest.from_fixture("graphql_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_root_field_answers_with_a_server_error(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])
