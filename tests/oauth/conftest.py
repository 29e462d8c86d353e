"""Fixtures of the OAuth tests; the helpers themselves live in ``tests.oauth.flow``."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer
from tests.oauth.flow import OAuthSetup, create_oauth_setup


@pytest.fixture
def stripe_app(live_server: LiveServer) -> OAuthSetup:
    """A Business workspace ``acme``, its owner, and the Stripe App client (public)."""
    return create_oauth_setup()


@pytest.fixture
def web_client(live_server: LiveServer) -> OAuthSetup:
    """A confidential client whose secret has ``+``, ``/`` and ``=`` in it."""
    return create_oauth_setup(
        public=False,
        requires_business_plan=False,
        redirect_uris=["https://client.example.com/callback"],
        client_secret="s3cr+t/with=sign+and/slash==",
    )
