"""``codeqr user create`` and ``codeqr oauth-client create``; each prints one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sqlmodel import select

from oauth.clients import ClientError, create_client
from oauth.principal import ALL_SCOPES
from oauth.users import UserError, add_membership, create_user
from server import db
from server.cli import CommandError
from server.models import Workspace
from server.models.auth import ROLES


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _password(value: str) -> str:
    """The password argument, or with ``-`` the first line of standard input, so the
    password need not stand in the shell's history or the process list."""
    if value != "-":
        return value
    line = sys.stdin.readline()
    if not line:
        raise CommandError("--password -: standard input was empty")
    return line.removesuffix("\n").removesuffix("\r")


def cmd_user_create(args: argparse.Namespace) -> int:
    password = _password(args.password)
    try:
        with db.session_scope() as session:
            user = create_user(session, args.email, password)
            result: dict[str, Any] = {"id": user.id, "email": user.email}
            if args.workspace:
                workspace = session.exec(
                    select(Workspace).where(Workspace.slug == args.workspace)
                ).first()
                if workspace is None:
                    raise CommandError(
                        f"no workspace with slug {args.workspace!r}; create it with "
                        f"`codeqr workspace create {args.workspace}`"
                    )
                add_membership(session, user, workspace, args.role)
                result.update(workspace=workspace.slug, role=args.role)
    except UserError as exc:
        raise CommandError(str(exc)) from exc
    _print(result)
    return 0


def cmd_oauth_client_create(args: argparse.Namespace) -> int:
    try:
        with db.session_scope() as session:
            registered = create_client(
                session,
                name=args.name,
                redirect_uris=args.redirect_uris,
                public=args.public,
                scopes=args.scopes or ALL_SCOPES,
                requires_business_plan=args.requires_business_plan,
                client_id=args.client_id,
            )
            result = registered.to_json()
    except ClientError as exc:
        raise CommandError(str(exc)) from exc
    _print(result)
    return 0


def add_commands(subparsers: Any) -> None:
    user = subparsers.add_parser(
        "user", help="users who sign in to CodeQR"
    ).add_subparsers(dest="action", required=True)
    user_create = user.add_parser("create", help="create a user who can log in")
    user_create.add_argument("--email", required=True)
    user_create.add_argument(
        "--password",
        required=True,
        help="the password, or - to read it from the first line of standard input",
    )
    user_create.add_argument("--workspace", metavar="SLUG", help="make them a member")
    user_create.add_argument("--role", choices=ROLES, default="member")
    user_create.set_defaults(handler=cmd_user_create)

    client = subparsers.add_parser(
        "oauth-client", help="OAuth clients (the Stripe App and others)"
    ).add_subparsers(dest="action", required=True)
    client_create = client.add_parser("create", help="register an OAuth client")
    client_create.add_argument("--name", required=True)
    client_create.add_argument(
        "--redirect-uri",
        dest="redirect_uris",
        metavar="URI",
        nargs="+",
        action="extend",
        required=True,
        help="exact redirect URI (repeatable); https, or http on loopback in development",
    )
    client_create.add_argument(
        "--public",
        action="store_true",
        help="no client secret; authenticates with PKCE only (the Stripe App)",
    )
    client_create.add_argument(
        "--scope",
        dest="scopes",
        metavar="SCOPE",
        nargs="+",
        action="extend",
        choices=ALL_SCOPES,
        help="allowed scopes (default: all)",
    )
    client_create.add_argument(
        "--requires-business-plan",
        action="store_true",
        help="only offer workspaces on the Business plan or higher (the Stripe App)",
    )
    client_create.add_argument(
        "--client-id",
        metavar="ID",
        help="choose the client id (e.g. the one a Stripe App manifest names); "
        "default: random",
    )
    client_create.set_defaults(handler=cmd_oauth_client_create)
