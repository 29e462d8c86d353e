"""The ``codeqr`` command. Each ``create`` prints one JSON object on stdout."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from server import db
from server.models import PLANS, ApiKey, Link, Partner, Workspace
from server.security import new_token, secret_key, token_hash
from server.settings import get_settings, reset_settings, settings_problem

Handler = Callable[[argparse.Namespace], int]
DEMO_ACCOUNT = "acct_1TestConnected000"


class CommandError(Exception):
    """A user mistake: printed as one line on stderr, exit status 2."""


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,60}")
_LINK_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,189}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}")
# Paths the app serves itself: a short link with one of these keys could never be reached.
RESERVED_KEYS = frozenset(
    {
        "graphql",
        "healthz",
        "oauth",
        "stripe",
        "stripe-app",
        "login",
        "logout",
        "favicon.ico",
        ".well-known",  # the key pattern already refuses it; listed for completeness
    }
)


def _check(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    if not pattern.fullmatch(value):
        raise CommandError(f"{what} {value!r} is not valid: {hint}")
    return value


def port_number(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return port


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _workspace(session: Any, slug: str) -> Workspace:
    workspace = session.exec(select(Workspace).where(Workspace.slug == slug)).first()
    if workspace is None:
        raise CommandError(
            f"no workspace with slug {slug!r}; create it with `codeqr workspace create {slug}`"
        )
    return workspace  # type: ignore[no-any-return]


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    db.upgrade()
    sys.stderr.write("database is at the latest migration\n")
    return 0


def create_workspace(
    slug: str,
    name: str | None = None,
    plan: str = "free",
    stripe_account: str | None = None,
    currency: str = "USD",
    commission_rate_bps: int = 1000,
) -> Workspace:
    _check(_SLUG, slug, "workspace slug", "use 1-63 lower-case letters, digits or '-'")
    reporting_currency = _reporting_currency(currency)
    _check_rate(commission_rate_bps)
    if stripe_account is not None:
        _check(
            _ACCOUNT,
            stripe_account,
            "--stripe-account",
            "expected acct_ and letters/digits",
        )
    with db.session_scope() as session:
        if session.exec(select(Workspace).where(Workspace.slug == slug)).first():
            raise CommandError(f"workspace {slug!r} already exists")
        workspace = Workspace(
            slug=slug,
            name=name or slug,
            plan=plan,
            reporting_currency=reporting_currency,
            commission_rate_bps=commission_rate_bps,
            stripe_account_id=stripe_account,
            stripe_connected_at=db_now() if stripe_account else None,
        )
        session.add(workspace)
        try:
            session.flush()
        except db.IntegrityError as exc:
            raise CommandError(
                f"Stripe account {stripe_account!r} is already linked to another workspace"
            ) from exc
        return workspace


def _check_rate(bps: int | None) -> None:
    if bps is not None and not 0 <= bps <= 10_000:
        raise CommandError(
            f"--commission-rate-bps must be 0 to 10000 (basis points: 1000 is 10%), "
            f"got {bps}"
        )


def _reporting_currency(code: str) -> str:
    """A currency sales can be converted into: one the ECB rate table quotes."""
    from server import currency as money

    upper = code.strip().upper()
    if upper in (money.REFERENCE_CURRENCY, "USD"):
        return upper  # quoted by every ECB table: no need to read one
    quoted = money.get_rate_table().currencies
    if upper not in quoted:
        raise CommandError(
            f"--currency {code!r} is not a currency of the ECB rate table; use one of "
            f"{', '.join(sorted(quoted))}"
        )
    return upper


def db_now() -> Any:
    from server.models import utcnow

    return utcnow()


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    return {
        "id": workspace.id,
        "slug": workspace.slug,
        "name": workspace.name,
        "plan": workspace.plan,
        "reportingCurrency": workspace.reporting_currency,
        "commissionRateBps": workspace.commission_rate_bps,
        "stripeAccount": workspace.stripe_account_id,
    }


def cmd_workspace_create(args: argparse.Namespace) -> int:
    workspace = create_workspace(
        args.slug,
        args.name,
        args.plan,
        args.stripe_account,
        args.currency,
        args.commission_rate_bps,
    )
    _print(workspace_json(workspace))
    return 0


def cmd_workspace_update(args: argparse.Namespace) -> int:
    """Change a workspace's name, plan or default commission rate. The reporting
    currency stays: figures already summed in it cannot change currency."""
    if args.name is None and args.plan is None and args.commission_rate_bps is None:
        raise CommandError(
            "nothing to change: give --name, --plan or --commission-rate-bps"
        )
    _check_rate(args.commission_rate_bps)
    with db.session_scope() as session:
        workspace = _workspace(session, args.slug)
        if args.name is not None:
            workspace.name = args.name
        if args.plan is not None:
            workspace.plan = args.plan
        if args.commission_rate_bps is not None:
            workspace.commission_rate_bps = args.commission_rate_bps
        session.add(workspace)
        session.flush()
        _print(workspace_json(workspace))
    return 0


_API_KEY_PREFIX_LENGTH = 12  # "cq_live_" and four characters of the secret part


def create_api_key(slug: str) -> str:
    token = new_token("cq_live_")
    with db.session_scope() as session:
        workspace = _workspace(session, slug)
        assert workspace.id is not None
        session.add(
            ApiKey(
                workspace_id=workspace.id,
                token_hash=token_hash(token),
                prefix=token[:_API_KEY_PREFIX_LENGTH],
            )
        )
    return token


def cmd_apikey_create(args: argparse.Namespace) -> int:
    token = create_api_key(args.workspace)
    _print(
        {
            "token": token,
            "workspace": args.workspace,
            "prefix": token[:_API_KEY_PREFIX_LENGTH],
        }
    )
    return 0


def _api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "createdAt": key.created_at.isoformat(),
        "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def cmd_apikey_list(args: argparse.Namespace) -> int:
    """One JSON line per key of the workspace, oldest first: never the token, which is
    not stored; the prefix tells keys apart."""
    with db.session_scope() as session:
        workspace = _workspace(session, args.workspace)
        keys = session.exec(
            select(ApiKey)
            .where(ApiKey.workspace_id == workspace.id)
            .order_by(ApiKey.id)  # type: ignore[arg-type]
        ).all()
        for key in keys:
            _print(_api_key_json(key))
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    """Revoke a key named by its id or prefix (as ``create`` and ``list`` print them) or
    by the whole token: requests with it are refused from now on. Revoking a revoked key
    changes nothing."""
    named: str = args.key
    with db.session_scope() as session:
        workspace = _workspace(session, args.workspace)
        query = select(ApiKey).where(ApiKey.workspace_id == workspace.id)
        if named.isdigit():
            query = query.where(ApiKey.id == int(named))
        elif len(named) > _API_KEY_PREFIX_LENGTH:
            query = query.where(ApiKey.token_hash == token_hash(named))
        else:
            query = query.where(ApiKey.prefix == named)
        matches = session.exec(query).all()
        if not matches:
            raise CommandError(
                f"workspace {args.workspace!r} has no such API key; "
                f"`codeqr apikey list --workspace {args.workspace}` shows them"
            )
        if len(matches) > 1:
            raise CommandError(
                f"{len(matches)} keys share the prefix {named!r}; name one by its id"
            )
        key = matches[0]
        if key.revoked_at is None:
            key.revoked_at = db_now()
            session.add(key)
        _print(_api_key_json(key))
    return 0


def create_link(
    slug: str,
    url: str,
    key: str | None = None,
    track_conversion: bool = False,
    partner: str | None = None,
    commission_rate_bps: int | None = None,
) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from server.conversions import commission_rate

    if urlsplit(url).scheme not in {"http", "https"} or not urlsplit(url).netloc:
        raise CommandError(f"--url must be an absolute http(s) URL, got {url!r}")
    settings = get_settings()
    key = key or secrets.token_urlsafe(5).replace("-", "x").replace("_", "y")
    _check(_LINK_KEY, key, "--key", "use letters, digits, '-' or '_' (up to 190)")
    if key.lower() in RESERVED_KEYS:
        raise CommandError(
            f"--key {key!r} is a path the server uses itself; pick another"
        )
    if partner is not None:
        _check(_EMAIL, partner, "--partner", "expected an email address")
    if commission_rate_bps is not None and partner is None:
        raise CommandError("--commission-rate-bps is the partner's rate: add --partner")
    _check_rate(commission_rate_bps)
    with db.session_scope() as session:
        workspace = _workspace(session, slug)
        assert workspace.id is not None
        partner_row = None
        if partner:
            partner_row = session.exec(
                select(Partner).where(
                    Partner.workspace_id == workspace.id, Partner.email == partner
                )
            ).first()
            if partner_row is None:
                partner_row = Partner(workspace_id=workspace.id, email=partner)
            if commission_rate_bps is not None:
                # The partner's rate from now on; earlier commissions keep theirs.
                partner_row.commission_rate_bps = commission_rate_bps
            session.add(partner_row)
            session.flush()
        link = Link(
            workspace_id=workspace.id,
            domain=settings.short_domain,
            key=key,
            url=url,
            track_conversion=track_conversion,
            partner_id=partner_row.id if partner_row else None,
        )
        session.add(link)
        try:
            session.flush()
        except db.IntegrityError as exc:
            raise CommandError(
                f"key {key!r} is already taken on {settings.short_domain}"
            ) from exc
        return {
            "id": link.id,
            "key": link.key,
            "domain": link.domain,
            "url": link.url,
            "shortUrl": f"{settings.public_url.rstrip('/')}/{link.key}",
            "trackConversion": link.track_conversion,
            "partner": partner,
            "commissionRateBps": (
                commission_rate(partner_row.commission_rate_bps, workspace)
                if partner_row
                else None
            ),
            "workspace": slug,
        }


def cmd_link_create(args: argparse.Namespace) -> int:
    _print(
        create_link(
            args.workspace,
            args.url,
            args.key,
            args.track_conversion,
            args.partner,
            args.commission_rate_bps,
        )
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from stripe_app.worker import one_loop_per_process

    if args.demo:
        _prepare_demo()
    _check_ready_to_serve()
    one_loop_per_process(args.workers, os.environ)  # inherited by uvicorn's processes
    from server.http_protocol import HTTP_PROTOCOL

    uvicorn.run(
        "server.app:app",
        http=HTTP_PROTOCOL,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        access_log=False,
        lifespan="on",
    )
    return 0


def _check_ready_to_serve() -> None:
    """Refuse to start a server that would fail its requests: a database that is not
    migrated, or no secret key outside development."""
    problem = db.schema_problem()
    if problem is not None:
        raise CommandError(
            f"{problem}; check CODEQR_DATABASE_URL and run `codeqr db upgrade` first"
        )
    try:
        secret_key()
    except RuntimeError as exc:
        raise CommandError(
            f"{exc} (a long random value, e.g. from "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
        ) from exc


DEMO_ENV_FILE = Path("codeqr-demo.env")


def _prepare_demo() -> None:
    """Migrate, make sure a ``demo`` workspace (Business plan) with a tracked link exists,
    and write this run's credentials to ``codeqr-demo.env`` (mode 600), not to the console."""
    db.upgrade()
    with db.session_scope() as session:
        exists = session.exec(select(Workspace).where(Workspace.slug == "demo")).first()
    if exists is None:
        create_workspace("demo", "Demo workspace", "business", DEMO_ACCOUNT)
        create_link(
            "demo",
            "https://example.com/pricing",
            key="demo",
            track_conversion=True,
            partner="partner@example.com",
        )
    webhook_secret = _demo_webhook_secret()
    values = {
        "CODEQR_DEMO_API_KEY": create_api_key("demo"),
        "CODEQR_DEMO_WEBHOOK_SECRET": webhook_secret,
    }
    fd = os.open(DEMO_ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"export {key}={value}\n" for key, value in values.items())
    sys.stderr.write(
        f"demo workspace ready: short link /demo, Stripe account {DEMO_ACCOUNT}; "
        f"API key and webhook secret for this run are in ./{DEMO_ENV_FILE} "
        f"(`source {DEMO_ENV_FILE}`)\n"
    )


def _demo_webhook_secret() -> str:
    """The configured webhook secret, or one made up for the demo and switched on."""
    configured = get_settings().stripe_webhook_secrets
    if configured:
        return configured[0].get_secret_value()
    secret = new_token("whsec_demo_", 24)
    os.environ["CODEQR_STRIPE_WEBHOOK_SECRETS"] = secret
    reset_settings()
    return secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeqr", description="CodeQR Conversions")
    commands = parser.add_subparsers(dest="command", required=True)

    database = commands.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True
    )
    database.add_parser("upgrade", help="apply every migration").set_defaults(
        handler=cmd_db_upgrade
    )

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--demo", action="store_true", help="migrate and create a demo workspace first"
    )
    serve.set_defaults(handler=cmd_serve)

    workspace = commands.add_parser(
        "workspace", help="workspaces (tenants)"
    ).add_subparsers(dest="action", required=True)
    ws_create = workspace.add_parser("create", help="create a workspace")
    ws_create.add_argument("slug")
    ws_create.add_argument("--name")
    ws_create.add_argument("--plan", choices=PLANS, default="free")
    ws_create.add_argument("--stripe-account", dest="stripe_account")
    ws_create.add_argument(
        "--currency",
        default="USD",
        help="reporting currency sales are converted into (default USD)",
    )
    ws_create.add_argument(
        "--commission-rate-bps",
        type=int,
        default=1000,
        help="partners' share of a sale, in basis points (default 1000: 10%%), "
        "unless a partner has a rate of their own",
    )
    ws_create.set_defaults(handler=cmd_workspace_create)
    ws_update = workspace.add_parser(
        "update", help="change a workspace's name, plan or commission rate"
    )
    ws_update.add_argument("slug")
    ws_update.add_argument("--name")
    ws_update.add_argument(
        "--plan",
        choices=PLANS,
        help="conversion tracking needs business or higher",
    )
    ws_update.add_argument("--commission-rate-bps", type=int)
    ws_update.set_defaults(handler=cmd_workspace_update)

    apikey = commands.add_parser(
        "apikey", help="API keys for the GraphQL API"
    ).add_subparsers(dest="action", required=True)
    key_create = apikey.add_parser("create", help="create an API key for a workspace")
    key_create.add_argument("--workspace", required=True)
    key_create.set_defaults(handler=cmd_apikey_create)
    key_list = apikey.add_parser("list", help="list a workspace's API keys")
    key_list.add_argument("--workspace", required=True)
    key_list.set_defaults(handler=cmd_apikey_list)
    key_revoke = apikey.add_parser("revoke", help="revoke an API key")
    key_revoke.add_argument(
        "key", help="the key's id or prefix (from `apikey list`), or the whole token"
    )
    key_revoke.add_argument("--workspace", required=True)
    key_revoke.set_defaults(handler=cmd_apikey_revoke)

    link = commands.add_parser("link", help="short links").add_subparsers(
        dest="action", required=True
    )
    link_create = link.add_parser("create", help="create a short link")
    link_create.add_argument("--workspace", required=True)
    link_create.add_argument("--url", required=True)
    link_create.add_argument("--key")
    link_create.add_argument("--track-conversion", action="store_true")
    link_create.add_argument("--partner", metavar="EMAIL")
    link_create.add_argument(
        "--commission-rate-bps",
        type=int,
        help="the partner's own share of a sale, in basis points (1000: 10%%), from "
        "now on; without it the workspace's rate applies",
    )
    link_create.set_defaults(handler=cmd_link_create)

    for module in ("oauth.cli", "stripe_app.cli", "server.fx_cli"):
        _optional_commands(module, commands)
    return parser


def _optional_commands(module: str, commands: Any) -> None:
    import importlib

    try:
        add_commands = importlib.import_module(module).add_commands
    except ModuleNotFoundError:
        return
    add_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    from server.log_config import configure_logging

    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.stderr.write(f"codeqr: error: bad setting: {settings_problem(exc)}\n")
        return 2
    configure_logging(settings.log_level)
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        sys.stderr.write(f"codeqr: error: {exc}\n")
        return 2
    except OperationalError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        sys.stderr.write(
            f"codeqr: error: the database is not usable ({reason}); check "
            "CODEQR_DATABASE_URL and run `codeqr db upgrade`\n"
        )
        return 2
    except BrokenPipeError:
        # The reader of our output went away (`codeqr events list | head`): stop quietly,
        # and keep the interpreter from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
