"""Authentication and scopes on /graphql, over real HTTP."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, make_read_only_key, make_tenant, revoke_keys

WORKSPACE = "{ workspace { slug plan reportingCurrency } }"
TRACK_LEAD = """
mutation Track($input: TrackLeadInput!) {
  trackLead(input: $input) { lead { eventName } }
}
"""


def test_graphql_without_token_is_401_unauthenticated(api: Api) -> None:
    response = api.post(WORKSPACE, token=None)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="codeqr"'
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_graphql_with_unknown_token_is_401_invalid_token(api: Api) -> None:
    make_tenant("acme")

    response = api.post(WORKSPACE, token="cq_live_not-a-real-key")

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_graphql_with_non_bearer_scheme_is_unauthenticated(api: Api) -> None:
    tenant = make_tenant("acme")

    response = api.http.post(
        "/graphql",
        json={"query": WORKSPACE},
        headers={"Authorization": f"Basic {tenant.token}"},
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_graphql_with_revoked_key_is_unauthenticated(api: Api) -> None:
    tenant = make_tenant("acme")
    revoke_keys(tenant)

    assert api.error_codes(WORKSPACE, token=tenant.token) == ["UNAUTHENTICATED"]


def test_graphql_with_api_key_reads_its_workspace(api: Api) -> None:
    tenant = make_tenant("acme")

    data = api.data(WORKSPACE, token=tenant.token)

    assert data == {
        "workspace": {"slug": "acme", "plan": "business", "reportingCurrency": "USD"}
    }


def test_track_lead_with_read_only_key_is_forbidden(api: Api) -> None:
    tenant = make_tenant("acme")
    token = make_read_only_key(tenant)
    variables = {"input": {"clickId": "x" * 20, "customerExternalId": "user_1"}}

    response = api.post(TRACK_LEAD, variables, token=token)

    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "conversions:write" in body["errors"][0]["message"]
    assert api.data(WORKSPACE, token=token)["workspace"]["slug"] == "acme"


def test_a_failing_token_lookup_never_logs_the_token(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.api.context import _authenticate
    from server.log_config import configure_logging, get_logger
    from tests.conftest import reset_process_state

    monkeypatch.setenv("CODEQR_DATABASE_URL", "sqlite:////nonexistent/dir/codeqr.db")
    reset_process_state()
    configure_logging()
    secret = "cq_live_" + "s3cr3t" * 6

    with pytest.raises(Exception) as failure:
        _authenticate(secret)
    get_logger("server.api.schema").error(
        "api.unexpected_error", exc_info=failure.value
    )

    logged = capsys.readouterr().err
    assert "api.unexpected_error" in logged
    assert "OperationalError" in logged
    assert secret not in logged
