"""``codeqr apikey create|list|revoke`` against a live server: a revoked key is refused
at once, and the token itself is never printed again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, make_tenant
from tests.conftest import run_cli

WHO = "{ workspace { slug } }"


def _create(capsys: pytest.CaptureFixture[str], slug: str) -> dict[str, Any]:
    status, lines, _ = run_cli(capsys, "apikey", "create", "--workspace", slug)
    assert status == 0
    created: dict[str, Any] = lines[0]
    assert created["prefix"] == created["token"][:12]
    return created


def test_apikey_list_and_revoke_by_prefix_id_or_token(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = make_tenant("acme")
    capsys.readouterr()
    keys = [_create(capsys, "acme") for _ in range(3)]
    for key in keys:
        assert api.data(WHO, token=key["token"])["workspace"]["slug"] == "acme"

    status, listed, _ = run_cli(capsys, "apikey", "list", "--workspace", "acme")
    assert status == 0
    assert [k["prefix"] for k in listed] == [
        tenant.token[:12],
        *(k["prefix"] for k in keys),
    ]
    assert all(k["revokedAt"] is None for k in listed)
    assert all(set(k) == {"id", "prefix", "createdAt", "revokedAt"} for k in listed)
    ids = {k["prefix"]: k["id"] for k in listed}

    by_prefix, by_id, by_token = keys
    revoked_at: list[str] = []
    for named in (by_prefix["prefix"], str(ids[by_id["prefix"]]), by_token["token"]):
        status, revoked, _ = run_cli(
            capsys, "apikey", "revoke", named, "--workspace", "acme"
        )
        assert status == 0 and revoked[0]["revokedAt"] is not None
        assert "token" not in revoked[0]
        revoked_at.append(revoked[0]["revokedAt"])

    for key in keys:
        assert api.error_codes(WHO, token=key["token"]) == ["UNAUTHENTICATED"]
    assert api.data(WHO, token=tenant.token)["workspace"]["slug"] == "acme"

    status, again, _ = run_cli(
        capsys, "apikey", "revoke", by_prefix["prefix"], "--workspace", "acme"
    )
    assert status == 0 and again[0]["revokedAt"] == revoked_at[0]  # unchanged


def test_apikey_revoke_refuses_keys_of_other_workspaces_and_unknown_ones(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_tenant("other")
    make_tenant("acme")
    capsys.readouterr()

    for named in (other.token, other.token[:12], "cq_live_none", "999999"):
        status, out, err = run_cli(
            capsys, "apikey", "revoke", named, "--workspace", "acme"
        )
        assert status == 2 and out == []
        assert "has no such API key" in err
        assert other.token not in err
    assert api.data(WHO, token=other.token)["workspace"]["slug"] == "other"

    status, _, err = run_cli(capsys, "apikey", "list", "--workspace", "nope")
    assert status == 2 and "no workspace with slug 'nope'" in err
