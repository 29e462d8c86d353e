"""``codeqr replay`` (send Stripe event files, signed, to a webhook URL) and
``codeqr events list|replay|prune`` (look into the inbox, give dead or skipped events
another go, delete events handled long ago). Every command prints one JSON object per line on stdout."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server.db import get_engine
from server.models import InboxStatus
from stripe_app import inbox

WEBHOOK_PATH = "/stripe/webhook"
MIN_DAYS = inbox.MIN_RETENTION.days


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


# --- codeqr replay FILE... --url URL --secret whsec_... ------------------------------


def webhook_url(url: str) -> str:
    """``--url`` as given, or with ``/stripe/webhook`` added when it names no path."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"--url must be an absolute http(s) URL, got {url!r}")
    if parts.path in {"", "/"}:
        parts = parts._replace(path=WEBHOOK_PATH)
    return urlunsplit(parts)


def send_file(client: Any, url: str, path: Path, secret: str) -> dict[str, Any]:
    """Sign the file's exact bytes with the SDK's helper and POST them."""
    import stripe

    result: dict[str, Any] = {"file": str(path)}
    try:
        body = path.read_bytes()
        header = stripe.WebhookSignature.generate_signature_header(
            body.decode("utf-8"), secret
        )
    except (OSError, UnicodeDecodeError) as exc:
        return result | {"status": None, "error": f"cannot read the file: {exc}"}

    try:
        response = client.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": header},
        )
    except Exception as exc:  # httpx.HTTPError and friends: report, go on
        return result | {"status": None, "error": f"{type(exc).__name__}: {exc}"}
    return result | {"status": response.status_code, "response": _body(response)}


def _body(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]


def cmd_replay(args: argparse.Namespace) -> int:
    import httpx

    try:
        url = webhook_url(args.url)
    except ValueError as exc:
        sys.stderr.write(f"codeqr: error: {exc}\n")
        return 2
    if not args.secret.startswith("whsec_"):
        sys.stderr.write(
            "codeqr: error: --secret must be a webhook secret (whsec_...)\n"
        )
        return 2

    failed = 0
    with httpx.Client(timeout=args.timeout) as client:
        for name in args.files:
            result = send_file(client, url, Path(name), args.secret)
            _print(result)
            status = result.get("status")
            failed += not (isinstance(status, int) and 200 <= status < 300)
    return 1 if failed else 0


# --- codeqr events list|replay -------------------------------------------------------


def cmd_events_list(args: argparse.Namespace) -> int:
    for event in inbox.list_events(get_engine(), args.status, args.limit):
        _print(event.to_dict())
    return 0


def cmd_events_replay(args: argparse.Namespace) -> int:
    statuses = []
    if args.all_dead:
        statuses.append(InboxStatus.DEAD)
    if args.all_skipped:
        statuses.append(InboxStatus.SKIPPED)
    if not args.event_ids and not statuses:
        sys.stderr.write(
            "codeqr: error: name event ids, or pass --all-dead or --all-skipped\n"
        )
        return 2

    engine = get_engine()
    reset = inbox.requeue(engine, args.event_ids, statuses)
    for event in reset:
        _print(event.to_dict() | {"previousStatus": event.status, "status": "pending"})

    missed = _not_replayed(engine, args.event_ids, {event.id for event in reset})
    for line in missed:
        _print(line)
    return 1 if missed else 0


MAX_DAYS = 36_500


def retention_days(text: str) -> float:
    """``--older-than-days``: a finite number of days, at least a week (see
    :data:`stripe_app.inbox.MIN_RETENTION`), at most a hundred years."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not math.isfinite(days) or not MIN_DAYS <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_DAYS} and {MAX_DAYS} days (Stripe redelivers for up "
            f"to three days; a kept event makes a redelivery a no-op), got {text!r}"
        )
    return days


def cmd_events_prune(args: argparse.Namespace) -> int:
    statuses = [InboxStatus.DONE]
    if args.include_skipped:
        statuses.append(InboxStatus.SKIPPED)
    if args.include_dead:
        statuses.append(InboxStatus.DEAD)
    older_than = timedelta(days=args.older_than_days)
    deleted = inbox.prune(get_engine(), older_than, statuses)  # days checked above
    _print(
        {
            "deleted": deleted,
            "statuses": [str(status) for status in statuses],
            "olderThanDays": args.older_than_days,
        }
    )
    return 0


def _not_replayed(engine: Any, ids: list[str], reset: set[str]) -> list[dict[str, Any]]:
    """Why each named id was left alone: unknown, or not dead/skipped."""
    lines = []
    for event_id in ids:
        if event_id in reset:
            continue
        event = inbox.get_event(engine, event_id)
        if event is None:
            lines.append({"id": event_id, "error": "no such event in the inbox"})
        else:
            lines.append(
                event.to_dict()
                | {
                    "error": f"event is {event.status}: only dead or skipped events replay"
                }
            )
    return lines


def add_commands(commands: Any) -> None:
    """Register ``replay`` and ``events`` on the ``codeqr`` subparsers."""
    replay = commands.add_parser(
        "replay", help="send Stripe event files, signed, to a webhook URL"
    )
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument(
        "--url",
        required=True,
        help="the webhook URL (a bare origin gets /stripe/webhook added)",
    )
    replay.add_argument("--secret", required=True, help="the webhook secret, whsec_...")
    replay.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    replay.set_defaults(handler=cmd_replay)

    events = commands.add_parser(
        "events", help="the Stripe event inbox"
    ).add_subparsers(dest="action", required=True)
    listing = events.add_parser("list", help="recent events, newest first")
    listing.add_argument("--status", choices=[str(s) for s in InboxStatus])
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(handler=cmd_events_list)

    again = events.add_parser(
        "replay", help="make dead or skipped events pending again"
    )
    again.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    again.add_argument("--all-dead", action="store_true")
    again.add_argument("--all-skipped", action="store_true")
    again.set_defaults(handler=cmd_events_replay)

    prune = events.add_parser(
        "prune", help="delete events handled long ago (done ones; pending never)"
    )
    prune.add_argument(
        "--older-than-days",
        type=retention_days,
        default=30.0,
        help=f"handled more than this many days ago (at least {MIN_DAYS}; default 30)",
    )
    prune.add_argument("--include-skipped", action="store_true")
    prune.add_argument("--include-dead", action="store_true")
    prune.set_defaults(handler=cmd_events_prune)
