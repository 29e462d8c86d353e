"""Hostile and malformed requests get clear 4xx answers or coded errors, never a 500."""

from __future__ import annotations

import json

import httpx
import pytest
import strawberry

from server.api.errors import MASKED_MESSAGE, CodedMaskErrors
from server.api.limits import MAX_ALIASES, MAX_BODY_BYTES, MAX_DEPTH
from server.api.view import ensure_coded
from tests.api.conftest import Api, make_tenant
from tests.conftest import start_server


def _post_raw(
    api: Api, token: str, content: bytes, content_type: str
) -> dict[str, object]:
    response = api.http.post(
        "/graphql",
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert response.status_code < 500
    return {"status": response.status_code, "body": response.json()}


def test_query_deeper_than_the_limit_is_a_validation_error(api: Api) -> None:
    tenant = make_tenant("acme")
    deepest_real = (
        "{ events { edges { node { ... on Lead { customer { link { key } } } } } } }"
    )
    too_deep = "{ " + "a { " * (MAX_DEPTH + 2) + "b" + " }" * (MAX_DEPTH + 2) + " }"

    assert api.data(deepest_real, token=tenant.token)["events"] == {"edges": []}
    errors = api.post(too_deep, token=tenant.token).json()["errors"]

    messages = [error["message"] for error in errors]
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in " ".join(messages)
    assert {error["extensions"]["code"] for error in errors} == {
        "GRAPHQL_VALIDATION_FAILED"
    }


def test_too_many_aliases_is_a_validation_error(api: Api) -> None:
    tenant = make_tenant("acme")
    aliases = " ".join(f"w{i}: workspace {{ slug }}" for i in range(MAX_ALIASES + 1))

    response = api.post("{ " + aliases + " }", token=tenant.token)

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "aliases" in error["message"]


def test_huge_token_count_is_a_parse_error(api: Api) -> None:
    tenant = make_tenant("acme")
    fields = " ".join("__typename" for _ in range(5000))

    response = api.post("{ " + fields + " }", token=tenant.token)

    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "tokens" in error["message"]


def test_syntax_error_and_unknown_field_are_coded_without_suggestions(api: Api) -> None:
    tenant = make_tenant("acme")

    syntax = api.post("{ workspace { slug ", token=tenant.token).json()["errors"][0]
    unknown = api.post("{ workspac { slug } }", token=tenant.token).json()["errors"][0]

    assert syntax["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert unknown["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Did you mean" not in unknown["message"]


def test_spread_of_an_unknown_fragment_is_a_validation_error(api: Api) -> None:
    tenant = make_tenant("acme")

    error = api.post("{ workspace { ...Missing } }", token=tenant.token).json()[
        "errors"
    ][0]

    assert error["message"] == "Unknown fragment 'Missing'."
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


def test_bad_variable_value_is_bad_user_input(api: Api) -> None:
    tenant = make_tenant("acme")
    query = "query Q($start: DateTime) { funnel(start: $start) { clicks } }"

    codes = api.error_codes(query, {"start": "yesterday"}, token=tenant.token)

    assert codes == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b"42", b'"query"', b"[" * 50_000 + b"]" * 50_000],
)
def test_body_that_is_not_a_json_object_is_400(api: Api, content: bytes) -> None:
    tenant = make_tenant("acme")
    if len(content) > MAX_BODY_BYTES:
        content = b"[" * (MAX_BODY_BYTES // 2 - 1) + b"]" * (MAX_BODY_BYTES // 2 - 1)

    result = _post_raw(api, tenant.token, content, "application/json")

    assert result["status"] == 400
    body = result["body"]
    assert isinstance(body, dict)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"query": "{ workspace { slug } }", "x": "\xff"}', "not UTF-8"),
        (b'{"query": ', "Expecting value at line 1, column 11"),
    ],
)
def test_unparsable_body_is_400_saying_why(
    api: Api, content: bytes, reason: str
) -> None:
    tenant = make_tenant("acme")

    result = _post_raw(api, tenant.token, content, "application/json")

    assert result["status"] == 400
    body = result["body"]
    assert isinstance(body, dict)
    message = body["errors"][0]["message"]
    assert message.startswith("Unable to parse request body as JSON")
    assert reason in message


def test_a_subscription_over_http_is_refused_with_where_to_send_it(api: Api) -> None:
    tenant = make_tenant("acme")

    body = api.post("subscription { events { kind } }", token=tenant.token).json()

    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "WebSocket (graphql-transport-ws)" in error["message"]
    assert body.get("data") is None


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_wrong_content_type_is_400(api: Api, content_type: str) -> None:
    tenant = make_tenant("acme")
    content = json.dumps({"query": "{ workspace { slug } }"}).encode()

    result = _post_raw(api, tenant.token, content, content_type)

    assert result["status"] == 400
    body = result["body"]
    assert isinstance(body, dict)
    assert "content type" in body["errors"][0]["message"]


def test_oversized_body_is_413_without_being_parsed(api: Api) -> None:
    tenant = make_tenant("acme")
    padding = "#" + "x" * MAX_BODY_BYTES + "\n"
    content = json.dumps({"query": padding + "{ workspace { slug } }"}).encode()

    result = _post_raw(api, tenant.token, content, "application/json")

    assert result["status"] == 413
    body = result["body"]
    assert isinstance(body, dict)
    assert str(MAX_BODY_BYTES) in body["errors"][0]["message"]


def test_queries_over_get_and_batches_are_refused(api: Api) -> None:
    tenant = make_tenant("acme")
    headers = {"Authorization": f"Bearer {tenant.token}"}

    over_get = api.http.get(
        "/graphql", params={"query": "{ workspace { slug } }"}, headers=headers
    )
    batch = api.http.post(
        "/graphql", json=[{"query": "{ workspace { slug } }"}], headers=headers
    )
    put = api.http.put("/graphql", json={"query": "{ __typename }"}, headers=headers)

    assert over_get.status_code == 400
    assert batch.status_code == 400
    assert put.status_code == 405


def test_graphiql_is_not_served_outside_development(api: Api) -> None:
    response = api.http.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 404


def test_introspection_is_off_in_production(settings_env: dict[str, str]) -> None:
    server = start_server({"CODEQR_ENVIRONMENT": "production"})
    try:
        tenant = make_tenant("acme")
        with server.client() as http:
            response = http.post(
                "/graphql",
                json={"query": "{ __schema { queryType { name } } }"},
                headers={"Authorization": f"Bearer {tenant.token}"},
            )
            allowed = http.post(
                "/graphql",
                json={"query": "{ workspace { slug } }"},
                headers={"Authorization": f"Bearer {tenant.token}"},
            )
    finally:
        server.stop()

    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "introspection" in error["message"].lower()
    assert allowed.json() == {"data": {"workspace": {"slug": "acme"}}}


SUGGESTING: list[tuple[str, dict[str, object] | None, str]] = [
    ("{ events(firs: 1) { edges { cursor } } }", None, "Unknown argument 'firs'"),
    (
        "query($c: Custome) { customer(externalId: $c) { id } }",
        None,
        "Unknown type 'Custome'",
    ),
    ("{ events(kinds: [SALES]) { edges { cursor } } }", None, "SALES"),
    (
        'mutation { trackLead(input: {clickID: "x", customerExternalId: "y"})'
        " { lead { id } } }",
        None,
        "clickID",
    ),
    (
        "query($k: [EventKind!]) { events(kinds: $k) { edges { cursor } } }",
        {"k": ["SAL"]},
        "'SAL'",
    ),
]


def _validation_messages(http: httpx.Client, token: str) -> list[str]:
    messages = []
    for query, variables, _ in SUGGESTING:
        answer = http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        messages.append(" | ".join(e["message"] for e in answer.json()["errors"]))
    return messages


def test_validation_messages_suggest_nothing_in_production(
    settings_env: dict[str, str], api: Api
) -> None:
    tenant = make_tenant("acme")
    development = _validation_messages(api.http, tenant.token)
    server = start_server({"CODEQR_ENVIRONMENT": "production"})
    try:
        with server.client() as http:
            production = _validation_messages(http, tenant.token)
    finally:
        server.stop()

    for (_, _, start), dev, prod in zip(
        SUGGESTING, development, production, strict=True
    ):
        assert start in dev and start in prod
        assert "Did you mean" in dev
        assert "Did you mean" not in prod


def test_unexpected_resolver_failure_is_masked_with_a_code() -> None:
    @strawberry.type
    class Query:
        @strawberry.field
        def broken(self) -> str:
            raise RuntimeError("secret connection string in the message")

    schema = strawberry.Schema(query=Query, extensions=[CodedMaskErrors])

    result = schema.execute_sync("{ broken }")

    assert result.errors is not None
    formatted = result.errors[0].formatted
    assert formatted["message"] == MASKED_MESSAGE
    assert formatted["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "classification": "INTERNAL_ERROR",
    }


def test_error_without_a_code_is_masked_before_it_leaves() -> None:
    coded = {"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}

    assert ensure_coded(coded) is coded
    assert ensure_coded({"message": "'Missing'"}) == {
        "message": MASKED_MESSAGE,
        "extensions": {
            "code": "INTERNAL_SERVER_ERROR",
            "classification": "INTERNAL_ERROR",
        },
    }
