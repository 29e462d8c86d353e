"""SQLModel tables, one module per aggregate. Money is always an integer in minor units
beside its currency code."""

from server.models.auth import (
    ApiKey,
    Membership,
    OAuthClient,
    OAuthCode,
    OAuthToken,
    User,
)
from server.models.base import utcnow
from server.models.conversions import (
    Commission,
    Customer,
    Lead,
    Payout,
    RollupHourly,
    Sale,
)
from server.models.inbox import InboxStatus, StripeEvent
from server.models.links import Click, Link, Partner
from server.models.workspace import PLANS, Workspace, plan_allows_conversions

__all__ = [
    "PLANS",
    "ApiKey",
    "Click",
    "Commission",
    "Customer",
    "InboxStatus",
    "Lead",
    "Link",
    "Membership",
    "OAuthClient",
    "OAuthCode",
    "OAuthToken",
    "Partner",
    "Payout",
    "RollupHourly",
    "Sale",
    "StripeEvent",
    "User",
    "Workspace",
    "plan_allows_conversions",
    "utcnow",
]
