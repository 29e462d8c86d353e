"""manifest/stripe-app.json against the rules Stripe documents for a v1 app manifest
(the published JSON schema of stripe/stripe-apps, the manifest reference and the
marketplace review rules), written out as checks; each rule is also shown to catch a
manifest that breaks it."""

from __future__ import annotations

import copy
import json
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifest"
MANIFEST = MANIFEST_DIR / "stripe-app.json"

REQUIRED_KEYS = {"id", "version", "name", "icon", "permissions", "ui_extension"}
ALLOWED_KEYS = REQUIRED_KEYS | {
    "$schema",
    "app_backend",
    "post_install_action",
    "constants",
    "allowed_redirect_uris",
    "distribution_type",
    "stripe_api_access_type",
    "sandbox_install_compatible",
}
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_\-\.]+$")
ICON_PATTERN = re.compile(r"^$|^\./((\.\./|[a-zA-Z0-9_/\-\\])[^\.\.]*\.png)$")
COMPONENT_PATTERN = re.compile(r"^[a-zA-Z0-9_]{1,}$")
CONNECT_SRC_PATTERN = re.compile(r"^https?://.*/.+")
REDIRECT_URI_PATTERN = re.compile(r"^https?://.*/.+")
NAME_MAX_LENGTH = 35
NAME_FORBIDDEN_WORDS = re.compile(r"\b(stripe|apps?|free|paid)\b", re.IGNORECASE)
ICON_SIZE = (300, 300)

# The permission ids of the published schema's enum.
KNOWN_PERMISSIONS = frozenset(
    [
        "account_link_write",
        "application_fee_read",
        "application_fee_write",
        "apply_pay_domain_read",
        "apply_pay_domain_write",
        "balance_read",
        "balance_transaction_source_read",
        "billing_clock_read",
        "billing_clock_write",
        "capital_for_platforms_financing_offer_read",
        "charge_read",
        "charge_write",
        "checkout_session_read",
        "checkout_session_write",
        "connected_account_read",
        "coupon_read",
        "coupon_write",
        "credit_note_read",
        "credit_note_write",
        "customer_portal_read",
        "customer_portal_write",
        "customer_read",
        "customer_write",
        "dispute_read",
        "dispute_write",
        "edit_link_write",
        "elements_write",
        "event_read",
        "file_read",
        "file_write",
        "invoice_read",
        "invoice_write",
        "issuing_authorization_read",
        "issuing_authorization_write",
        "issuing_card_read",
        "issuing_card_write",
        "issuing_cardholder_read",
        "issuing_cardholder_write",
        "issuing_dispute_read",
        "issuing_dispute_write",
        "issuing_transaction_read",
        "issuing_transaction_write",
        "mandate_read",
        "mandate_write",
        "order_read",
        "order_write",
        "payment_intent_read",
        "payment_intent_write",
        "payment_links_read",
        "payment_links_write",
        "payment_method_read",
        "payment_method_write",
        "payout_read",
        "payout_write",
        "plan_read",
        "plan_write",
        "product_read",
        "product_write",
        "quote_read",
        "quote_write",
        "report_runs_and_report_types_read",
        "secret_write",
        "setup_intent_read",
        "setup_intent_write",
        "sku_read",
        "sku_write",
        "source_read",
        "source_write",
        "stripecli_session_write",
        "subscription_read",
        "subscription_write",
        "tax_rate_read",
        "tax_rate_write",
        "token_read",
        "token_write",
        "top_up_read",
        "top_up_write",
        "transfer_read",
        "transfer_write",
        "usage_record_read",
        "usage_record_write",
        "user_email_read",
        "webhook_read",
        "webhook_write",
    ]
)
KNOWN_VIEWPORTS = frozenset(
    [
        "settings",
        "onboarding",
        "stripe.dashboard.balance.overview",
        "stripe.dashboard.billing.overview",
        "stripe.dashboard.customer.detail",
        "stripe.dashboard.customer.list",
        "stripe.dashboard.drawer.default",
        "stripe.dashboard.home.overview",
        "stripe.dashboard.invoice.detail",
        "stripe.dashboard.invoice.list",
        "stripe.dashboard.payment-link.detail",
        "stripe.dashboard.payment-link.list",
        "stripe.dashboard.payment.detail",
        "stripe.dashboard.payment.list",
        "stripe.dashboard.product.detail",
        "stripe.dashboard.product.list",
        "stripe.dashboard.report.overview",
        "stripe.dashboard.revenue-recognition.overview",
        "stripe.dashboard.subscription.detail",
        "stripe.dashboard.subscription.list",
        "stripe.dashboard.tax-report.overview",
        "stripe.dashboard.fullpage",
    ]
)
UI_EXTENSION_KEYS = {"views", "content_security_policy"}
CSP_KEYS = {"connect-src", "image-src", "purpose"}
ACCESS_TYPES = {"platform", "oauth", "restricted_api_key"}
DISTRIBUTION_TYPES = {"public", "private"}

# Webhook events need event_read plus the read permission of the event's object
# (Stripe's "Event permissions" table); install events need none.
EVENT_PERMISSIONS = {
    "customer.": "customer_read",
    "checkout.session.": "checkout_session_read",
    "invoice.": "invoice_read",
    "charge.": "charge_read",
    "account.application.": None,
}
# The events the design attributes (DESIGN.md, "Stripe events").
ATTRIBUTED_EVENTS = [
    "customer.created",
    "customer.updated",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "invoice.paid",
    "charge.refunded",
    "account.application.deauthorized",
]


def load_manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a well-formed PNG; raises ValueError on anything else
    (bad signature, bad chunk checksum, image data that does not decompress to the
    size the header announces)."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path.name} is not a PNG")
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path.name}: bad checksum in chunk {kind!r}")
        chunks.append((kind, body))
        offset += 12 + length
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError(f"{path.name}: chunks must start with IHDR and end with IEND")
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    pixels = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    if len(pixels) != height * (1 + (width * channels * depth + 7) // 8):
        raise ValueError(f"{path.name}: image data does not match {width}x{height}")
    return width, height


def manifest_problems(manifest: dict[str, Any], root: Path) -> list[str]:
    """Every documented rule the manifest breaks, one line each."""
    problems: list[str] = []
    problems += _top_level_problems(manifest)
    problems += _identity_problems(manifest, root)
    problems += _permission_problems(manifest.get("permissions"))
    problems += _ui_extension_problems(manifest.get("ui_extension"), root)
    problems += _install_problems(manifest)
    return problems


def _top_level_problems(manifest: dict[str, Any]) -> list[str]:
    problems = [f"missing key {k!r}" for k in sorted(REQUIRED_KEYS - manifest.keys())]
    problems += [f"unknown key {k!r}" for k in sorted(manifest.keys() - ALLOWED_KEYS)]
    return problems


def _identity_problems(manifest: dict[str, Any], root: Path) -> list[str]:
    problems: list[str] = []
    if not ID_PATTERN.fullmatch(str(manifest.get("id", ""))):
        problems.append(
            f"id {manifest.get('id')!r} does not match {ID_PATTERN.pattern}"
        )
    version = manifest.get("version")
    if not isinstance(version, str) or not version:
        problems.append("version must be a non-empty string")

    name = manifest.get("name")
    if not isinstance(name, str) or not name:
        problems.append("name must be a non-empty string")
    elif len(name) > NAME_MAX_LENGTH:
        problems.append(f"name {name!r} is longer than {NAME_MAX_LENGTH} characters")
    elif NAME_FORBIDDEN_WORDS.search(name):
        problems.append(f"name {name!r} uses a word the marketplace refuses")

    icon = manifest.get("icon")
    if not isinstance(icon, str) or not icon or not ICON_PATTERN.fullmatch(icon):
        problems.append(f"icon {icon!r} must be a relative path to a .png")
    elif not (root / icon).is_file():
        problems.append(f"icon {icon!r} does not exist")
    else:
        try:
            size = png_size(root / icon)
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if size != ICON_SIZE:
                problems.append(f"icon is {size[0]}x{size[1]}, not 300x300")
    return problems


def _permission_problems(permissions: Any) -> list[str]:
    if not isinstance(permissions, list) or not permissions:
        return ["permissions must be a non-empty list"]
    problems: list[str] = []
    seen: set[str] = set()
    for entry in permissions:
        if not isinstance(entry, dict) or set(entry) != {"permission", "purpose"}:
            problems.append(
                f"permission {entry!r} must have exactly permission and purpose"
            )
            continue
        permission, purpose = entry["permission"], entry["purpose"]
        if permission not in KNOWN_PERMISSIONS:
            problems.append(f"unknown permission {permission!r}")
        if not isinstance(purpose, str) or not purpose.strip():
            problems.append(f"permission {permission!r} has no purpose")
        if permission in seen:
            problems.append(f"permission {permission!r} is listed twice")
        seen.add(permission)

    for event_type in ATTRIBUTED_EVENTS:
        for needed in ("event_read", _event_permission(event_type)):
            if needed is not None and needed not in seen:
                problems.append(f"{event_type} needs the {needed} permission")
    return problems


def _event_permission(event_type: str) -> str | None:
    for prefix, permission in EVENT_PERMISSIONS.items():
        if event_type.startswith(prefix):
            return permission
    raise AssertionError(f"no permission known for {event_type}: add it to the table")


def _ui_extension_problems(ui: Any, root: Path) -> list[str]:
    if not isinstance(ui, dict):
        return ["ui_extension must be an object"]
    problems = [
        f"unknown ui_extension key {k!r}" for k in sorted(ui.keys() - UI_EXTENSION_KEYS)
    ]

    for view in ui.get("views") or []:
        viewport, component = view.get("viewport"), view.get("component")
        if viewport not in KNOWN_VIEWPORTS:
            problems.append(f"unknown viewport {viewport!r}")
        if not isinstance(component, str) or not COMPONENT_PATTERN.fullmatch(component):
            problems.append(f"component {component!r} is not a component name")
        elif not _has_default_export(root / "src" / "views" / f"{component}.tsx"):
            problems.append(
                f"src/views/{component}.tsx with a default export is missing"
            )

    csp = ui.get("content_security_policy")
    if csp is not None:
        problems += _csp_problems(csp)
    return problems


def _has_default_export(path: Path) -> bool:
    return path.is_file() and "export default" in path.read_text()


def _csp_problems(csp: Any) -> list[str]:
    if not isinstance(csp, dict):
        return ["content_security_policy must be an object"]
    problems = [f"unknown CSP key {k!r}" for k in sorted(csp.keys() - CSP_KEYS)]
    if not isinstance(csp.get("purpose"), str) or not csp["purpose"].strip():
        problems.append("content_security_policy needs a purpose")
    for url in csp.get("connect-src") or []:
        if not CONNECT_SRC_PATTERN.fullmatch(url):
            problems.append(f"connect-src {url!r} needs a path after the host")
        elif not url.startswith("https://"):
            problems.append(f"connect-src {url!r} must be https")
    return problems


def _install_problems(manifest: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    action = manifest.get("post_install_action")
    views = (manifest.get("ui_extension") or {}).get("views") or []
    if action is not None:
        if action == {"type": "settings"}:
            if not any(v.get("viewport") == "settings" for v in views):
                problems.append("post_install_action settings needs a settings view")
        elif set(action) == {"type", "url"} and action["type"] == "external":
            if not str(action["url"]).startswith("https://"):
                problems.append("post_install_action url must be https")
        elif action != {"type": "onboarding"}:
            problems.append(f"post_install_action {action!r} has an unknown shape")

    uris = manifest.get("allowed_redirect_uris") or []
    for uri in uris:
        if not REDIRECT_URI_PATTERN.fullmatch(uri) or not uri.startswith("https://"):
            problems.append(
                f"allowed_redirect_uris entry {uri!r} must be https with a path"
            )
    if len(set(uris)) != len(uris):
        problems.append("allowed_redirect_uris has duplicates")

    access = manifest.get("stripe_api_access_type", "platform")
    distribution = manifest.get("distribution_type", "private")
    if access not in ACCESS_TYPES:
        problems.append(f"stripe_api_access_type {access!r} is unknown")
    if distribution not in DISTRIBUTION_TYPES:
        problems.append(f"distribution_type {distribution!r} is unknown")
    if access == "oauth" and distribution != "public":
        problems.append("stripe_api_access_type oauth needs distribution_type public")
    if not isinstance(manifest.get("sandbox_install_compatible", False), bool):
        problems.append("sandbox_install_compatible must be true or false")
    return problems


# --- the real manifest ---------------------------------------------------------------


def test_manifest_follows_every_documented_rule() -> None:
    assert manifest_problems(load_manifest(), MANIFEST_DIR) == []


def test_manifest_declares_the_settings_view_and_how_it_is_installed() -> None:
    manifest = load_manifest()

    assert manifest["id"] == "com.codeqr.conversions"
    assert {"viewport": "settings", "component": "SettingsView"} in manifest[
        "ui_extension"
    ]["views"]
    assert manifest["post_install_action"] == {"type": "settings"}
    assert manifest["stripe_api_access_type"] == "platform"
    assert manifest["distribution_type"] == "public"
    assert manifest["sandbox_install_compatible"] is True


def test_manifest_permissions_are_exactly_what_the_attributed_events_need() -> None:
    permissions = {p["permission"] for p in load_manifest()["permissions"]}

    assert permissions == {
        "event_read",
        "customer_read",
        "checkout_session_read",
        "invoice_read",
        "charge_read",
    }


def test_every_handled_event_type_is_covered_by_a_permission() -> None:
    from stripe_app.registry import HANDLERS

    permissions = {p["permission"] for p in load_manifest()["permissions"]}
    for event_type in HANDLERS:
        needed = _event_permission(event_type)
        assert needed is None or needed in permissions, event_type


def test_connect_src_covers_the_api_the_settings_view_calls() -> None:
    manifest = load_manifest()
    api = manifest["constants"]["CODEQR_API_URL"]
    allowed = manifest["ui_extension"]["content_security_policy"]["connect-src"]

    for path in ("/stripe-app/status", "/stripe-app/connect", "/oauth/token"):
        url = api + path
        assert any(
            url == entry or (entry.endswith("/") and url.startswith(entry))
            for entry in allowed
        ), url


def test_settings_view_uses_the_manifest_id_for_its_oauth_callback() -> None:
    source = (MANIFEST_DIR / "src" / "views" / "SettingsView.tsx").read_text()
    manifest_id = load_manifest()["id"]

    assert f"const APP_ID = '{manifest_id}';" in source
    assert "apps-oauth/${appId}" in source
    assert "fetchStripeSignature" in source
    assert "code_challenge_method: 'S256'" in source


def test_icon_is_a_300_by_300_png() -> None:
    assert png_size(MANIFEST_DIR / "icon.png") == (300, 300)


# --- each rule catches a manifest that breaks it -------------------------------------


def _broken(change: str) -> dict[str, Any]:
    manifest = copy.deepcopy(load_manifest())
    ui = manifest["ui_extension"]
    edits: dict[str, Callable[[], object]] = {
        "unknown-key": lambda: manifest.update(webhooks=[]),
        "missing-icon-key": lambda: manifest.pop("icon"),
        "id-with-slash": lambda: manifest.update(id="com/codeqr"),
        "name-too-long": lambda: manifest.update(name="C" * 36),
        "name-with-stripe": lambda: manifest.update(name="CodeQR for Stripe"),
        "name-with-app": lambda: manifest.update(name="CodeQR App"),
        "icon-missing-file": lambda: manifest.update(icon="./missing.png"),
        "icon-not-png": lambda: manifest.update(icon="./icon.jpg"),
        "permission-unknown": lambda: manifest["permissions"].append(
            {"permission": "customers_read", "purpose": "x"}
        ),
        "permission-without-purpose": lambda: manifest["permissions"][0].pop("purpose"),
        "permission-extra-key": lambda: manifest["permissions"][0].update(
            optional=True
        ),
        "permission-missing-for-event": lambda: manifest.update(
            permissions=[
                p for p in manifest["permissions"] if p["permission"] != "invoice_read"
            ]
        ),
        "viewport-unknown": lambda: ui["views"][0].update(
            viewport="dashboard.settings"
        ),
        "component-file-missing": lambda: ui["views"][0].update(component="NoSuchView"),
        "connect-src-without-path": lambda: ui["content_security_policy"].update(
            {"connect-src": ["https://api.codeqr.io/"]}
        ),
        "connect-src-http": lambda: ui["content_security_policy"].update(
            {"connect-src": ["http://api.codeqr.io/stripe-app/"]}
        ),
        "csp-without-purpose": lambda: ui["content_security_policy"].pop("purpose"),
        "post-install-unknown": lambda: manifest.update(
            post_install_action={"type": "nope"}
        ),
        "redirect-uri-http": lambda: manifest.update(
            allowed_redirect_uris=["http://app.codeqr.io/installed"]
        ),
        "oauth-private": lambda: manifest.update(
            stripe_api_access_type="oauth", distribution_type="private"
        ),
    }
    edits[change]()
    return manifest


BREAKS = [
    "unknown-key",
    "missing-icon-key",
    "id-with-slash",
    "name-too-long",
    "name-with-stripe",
    "name-with-app",
    "icon-missing-file",
    "icon-not-png",
    "permission-unknown",
    "permission-without-purpose",
    "permission-extra-key",
    "permission-missing-for-event",
    "viewport-unknown",
    "component-file-missing",
    "connect-src-without-path",
    "connect-src-http",
    "csp-without-purpose",
    "post-install-unknown",
    "redirect-uri-http",
    "oauth-private",
]


@pytest.mark.parametrize("change", BREAKS)
def test_a_manifest_breaking_a_rule_is_reported(change: str) -> None:
    assert manifest_problems(_broken(change), MANIFEST_DIR) != []


def test_an_icon_of_the_wrong_size_is_reported(tmp_path: Path) -> None:
    (tmp_path / "src" / "views").mkdir(parents=True)
    (tmp_path / "src" / "views" / "SettingsView.tsx").write_text("export default 1;\n")
    (tmp_path / "icon.png").write_bytes(_png(64, 64))

    problems = manifest_problems(load_manifest(), tmp_path)

    assert problems == ["icon is 64x64, not 300x300"]


def test_a_corrupt_icon_is_reported(tmp_path: Path) -> None:
    (tmp_path / "src" / "views").mkdir(parents=True)
    (tmp_path / "src" / "views" / "SettingsView.tsx").write_text("export default 1;\n")
    data = bytearray(_png(300, 300))
    data[-20] ^= 0xFF
    (tmp_path / "icon.png").write_bytes(bytes(data))

    problems = manifest_problems(load_manifest(), tmp_path)

    assert len(problems) == 1 and "icon.png" in problems[0]


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff" * width * 3 for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
