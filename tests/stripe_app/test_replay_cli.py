"""``codeqr replay`` against a live server, and ``codeqr events list|replay``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.cli import main
from server.models import InboxStatus
from stripe_app import inbox
from stripe_app.cli import webhook_url
from tests.conftest import WEBHOOK_SECRET, LiveServer, fixture_path
from tests.stripe_app.conftest import RecordingHandler, inbox_row, inbox_rows

Register = Callable[..., RecordingHandler]
PURCHASE = [
    "event_customer_created.json",
    "event_checkout_session_completed.json",
    "event_invoice_paid.json",
]


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _handle_purchase_types(register_handler: Register) -> None:
    # The receiver stores handled types as pending; these test handlers stand in for the
    # real ones (the receiver's worker is off, so they are never called).
    for name in PURCHASE:
        register_handler(json.loads(fixture_path(name).read_bytes())["type"])


def test_replay_cli_sends_fixture_files_signed_to_the_live_server(
    receiver: LiveServer,
    register_handler: Register,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _handle_purchase_types(register_handler)
    files = [str(fixture_path(name)) for name in PURCHASE]

    status = main(
        [
            "replay",
            *files,
            "--url",
            f"{receiver.url}/stripe/webhook",
            "--secret",
            WEBHOOK_SECRET,
        ]
    )

    assert status == 0
    results = _lines(capsys.readouterr().out)
    assert [r["file"] for r in results] == files
    assert [r["status"] for r in results] == [200, 200, 200]
    assert [r["response"] for r in results] == [{"received": True}] * 3
    rows = inbox_rows()
    assert {row.type for row in rows} == {
        "customer.created",
        "checkout.session.completed",
        "invoice.paid",
    }
    for row in rows:
        assert row.status == InboxStatus.PENDING
    stored = {row.type: row.payload.encode() for row in rows}
    assert (
        stored["invoice.paid"] == fixture_path("event_invoice_paid.json").read_bytes()
    )


def test_replay_cli_reports_a_redelivery_as_duplicate(
    receiver: LiveServer,
    register_handler: Register,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _handle_purchase_types(register_handler)
    file = str(fixture_path(PURCHASE[0]))

    status = main(
        ["replay", file, file, "--url", receiver.url, "--secret", WEBHOOK_SECRET]
    )

    assert status == 0
    first, second = _lines(capsys.readouterr().out)
    assert first["response"] == {"received": True}
    assert second["response"] == {"received": True, "duplicate": True}
    assert len(inbox_rows()) == 1


def test_replay_cli_exits_non_zero_when_the_server_refuses(
    receiver: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(fixture_path(PURCHASE[0]))
    wrong = "whsec_not_the_one_" + "0" * 24

    status = main(["replay", file, "--url", receiver.url, "--secret", wrong])

    assert status == 1
    [result] = _lines(capsys.readouterr().out)
    assert result["status"] == 400
    assert "no v1 signature matches" in result["response"]["error"]
    assert inbox_rows() == []


def test_replay_cli_reports_an_unreadable_file_and_goes_on(
    receiver: LiveServer,
    register_handler: Register,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _handle_purchase_types(register_handler)
    missing = str(tmp_path / "missing.json")
    file = str(fixture_path(PURCHASE[0]))

    status = main(
        ["replay", missing, file, "--url", receiver.url, "--secret", WEBHOOK_SECRET]
    )

    assert status == 1
    unreadable, sent = _lines(capsys.readouterr().out)
    assert unreadable["status"] is None
    assert unreadable["error"].startswith("cannot read the file")
    assert sent["status"] == 200


def test_replay_cli_needs_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(fixture_path(PURCHASE[0])), "--secret", WEBHOOK_SECRET])

    assert exit_info.value.code == 2
    assert "--url" in capsys.readouterr().err


def test_replay_cli_refuses_a_secret_that_is_not_a_webhook_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(
        [
            "replay",
            str(fixture_path(PURCHASE[0])),
            "--url",
            "http://127.0.0.1:9/stripe/webhook",
            "--secret",
            "sk_test_123",
        ]
    )

    assert status == 2
    assert "whsec_" in capsys.readouterr().err


def test_replay_cli_webhook_url_adds_the_path_to_a_bare_origin() -> None:
    assert (
        webhook_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/stripe/webhook"
    )
    assert (
        webhook_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/stripe/webhook"
    )
    assert webhook_url("https://h.example/hooks/in") == "https://h.example/hooks/in"
    with pytest.raises(ValueError, match="absolute http"):
        webhook_url("127.0.0.1:8000")


def test_replay_cli_runs_as_the_installed_codeqr_command(
    receiver: LiveServer, register_handler: Register
) -> None:
    _handle_purchase_types(register_handler)
    codeqr = Path(sys.executable).with_name("codeqr")
    file = str(fixture_path(PURCHASE[0]))

    done = subprocess.run(
        [
            str(codeqr),
            "replay",
            file,
            "--url",
            receiver.url,
            "--secret",
            WEBHOOK_SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert _lines(done.stdout)[0]["status"] == 200
    assert WEBHOOK_SECRET not in done.stderr
    assert len(inbox_rows()) == 1


# --- codeqr events -------------------------------------------------------------------


def _store(
    event_id: str, event_type: str = "customer.created", skip: str | None = None
) -> None:
    from server import db

    body = json.dumps({"id": event_id, "object": "event", "type": event_type})
    inbox.store(
        db.get_engine(),
        inbox.IncomingEvent(event_id, event_type, "acct_1", False, 0, body),
        skip_reason=skip,
    )


def _set_status(event_id: str, status: InboxStatus, reason: str) -> None:
    from sqlalchemy import update

    from server import db

    with db.get_engine().begin() as conn:
        conn.execute(
            update(inbox.TABLE)
            .where(inbox.TABLE.c.id == event_id)
            .values(status=status, reason=reason, attempts=8)
        )


def test_events_list_prints_json_lines_filtered_by_status(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _store("evt_pending")
    _store("evt_skipped", "plan.created", skip="unhandled event type plan.created")
    _store("evt_dead")
    _set_status("evt_dead", InboxStatus.DEAD, "customer not there yet")

    assert main(["events", "list"]) == 0
    everything = _lines(capsys.readouterr().out)
    assert main(["events", "list", "--status", "dead"]) == 0
    dead = _lines(capsys.readouterr().out)
    assert main(["events", "list", "--limit", "1"]) == 0
    one = _lines(capsys.readouterr().out)

    assert {e["id"] for e in everything} == {"evt_pending", "evt_skipped", "evt_dead"}
    assert [
        {
            k: e[k]
            for k in ("id", "type", "account", "status", "reason", "failedAttempts")
        }
        for e in dead
    ] == [
        {
            "id": "evt_dead",
            "type": "customer.created",
            "account": "acct_1",
            "status": "dead",
            "reason": "customer not there yet",
            "failedAttempts": 8,
        }
    ]
    assert len(one) == 1
    by_id = {e["id"]: e for e in everything}
    assert by_id["evt_pending"]["processedAt"] is None
    assert by_id["evt_skipped"]["processedAt"] is not None  # stored as skipped


def test_events_replay_all_dead_and_all_skipped_reset_them_to_pending(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _store("evt_pending")
    _store("evt_skipped", "plan.created", skip="unhandled event type plan.created")
    _store("evt_dead")
    _set_status("evt_dead", InboxStatus.DEAD, "customer not there yet")
    _store("evt_done")
    _set_status("evt_done", InboxStatus.DONE, "")

    assert main(["events", "replay", "--all-dead"]) == 0
    [dead] = _lines(capsys.readouterr().out)
    assert main(["events", "replay", "--all-skipped"]) == 0
    [skipped] = _lines(capsys.readouterr().out)

    assert (dead["id"], dead["previousStatus"], dead["status"]) == (
        "evt_dead",
        "dead",
        "pending",
    )
    assert (skipped["id"], skipped["previousStatus"]) == ("evt_skipped", "skipped")
    for event_id in ("evt_dead", "evt_skipped"):
        row = inbox_row(event_id)
        assert row is not None
        assert (row.status, row.attempts, row.reason, row.processed_at) == (
            InboxStatus.PENDING,
            0,
            None,
            None,
        )
    done = inbox_row("evt_done")
    assert done is not None and done.status == InboxStatus.DONE


def test_events_replay_by_id_refuses_unknown_and_not_replayable_events(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _store("evt_dead")
    _set_status("evt_dead", InboxStatus.DEAD, "customer not there yet")
    _store("evt_pending")

    status = main(["events", "replay", "evt_dead", "evt_pending", "evt_nope"])

    assert status == 1
    lines = {line["id"]: line for line in _lines(capsys.readouterr().out)}
    assert lines["evt_dead"]["status"] == "pending"
    assert (
        lines["evt_pending"]["error"]
        == "event is pending: only dead or skipped events replay"
    )
    assert lines["evt_nope"]["error"] == "no such event in the inbox"


def test_events_replay_needs_ids_or_a_flag(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "replay"]) == 2
    assert "--all-dead" in capsys.readouterr().err


def _age(event_id: str, status: InboxStatus, days: float) -> None:
    """Make the event finished ``days`` ago (received and due a little before)."""
    from datetime import timedelta

    from sqlalchemy import update

    from server import db
    from server.models import utcnow

    handled = utcnow() - timedelta(days=days)
    with db.get_engine().begin() as conn:
        conn.execute(
            update(inbox.TABLE)
            .where(inbox.TABLE.c.id == event_id)
            .values(
                status=status,
                processed_at=handled,
                received_at=handled - timedelta(seconds=1),
                next_attempt_at=handled - timedelta(seconds=1),
            )
        )


def test_events_prune_deletes_old_done_events_and_keeps_everything_else(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for event_id, status, days in [
        ("evt_old_done", InboxStatus.DONE, 40),
        ("evt_recent_done", InboxStatus.DONE, 3),
        ("evt_old_skipped", InboxStatus.SKIPPED, 40),
        ("evt_old_dead", InboxStatus.DEAD, 40),
    ]:
        _store(event_id)
        _age(event_id, status, days)
    _store("evt_pending")

    assert main(["events", "prune"]) == 0
    assert _lines(capsys.readouterr().out) == [
        {"deleted": 1, "statuses": ["done"], "olderThanDays": 30.0}
    ]
    assert {row.id for row in inbox_rows()} == {
        "evt_recent_done",
        "evt_old_skipped",
        "evt_old_dead",
        "evt_pending",
    }

    assert main(["events", "prune", "--include-skipped", "--include-dead"]) == 0
    assert _lines(capsys.readouterr().out)[0]["deleted"] == 2
    assert {row.id for row in inbox_rows()} == {"evt_recent_done", "evt_pending"}


def test_events_prune_refuses_to_cut_into_the_redelivery_window(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _store("evt_done")
    _age("evt_done", InboxStatus.DONE, 10)

    for days in ("2", "nan", "inf", "1e9", "-7", "seven"):
        with pytest.raises(SystemExit) as refused:
            main(["events", "prune", "--older-than-days", days])
        assert refused.value.code == 2
        error = capsys.readouterr().err
        assert "--older-than-days" in error and "Traceback" not in error, error
    assert inbox_row("evt_done") is not None
    from datetime import timedelta

    from server import db

    with pytest.raises(ValueError, match="at least 7 days"):
        inbox.prune(db.get_engine(), timedelta(days=6, hours=23))

    assert main(["events", "prune", "--older-than-days", "7"]) == 0
    assert inbox_row("evt_done") is None


def test_events_prune_works_in_batches(
    settings_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inbox, "PRUNE_BATCH", 2)
    for number in range(5):
        _store(f"evt_{number}")
        _age(f"evt_{number}", InboxStatus.DONE, 40)
    assert main(["events", "prune"]) == 0
    assert _lines(capsys.readouterr().out)[0]["deleted"] == 5
    assert inbox_rows() == []


def test_events_list_into_a_reader_that_stops_early_ends_quietly(
    settings_env: dict[str, str],
) -> None:
    for number in range(600):  # ~150 kB of lines: more than a pipe holds
        _store(f"evt_many_{number:04d}")
    codeqr = Path(sys.executable).with_name("codeqr")
    listing = subprocess.Popen(  # noqa: S603 (our own command)
        [str(codeqr), "events", "list", "--limit", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert listing.stdout is not None and listing.stderr is not None
    first = listing.stdout.readline()
    listing.stdout.close()  # as `| head -1` does
    errors = listing.stderr.read().decode()
    assert listing.wait(timeout=60) == 141
    assert json.loads(first)["id"].startswith("evt_many_")
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
