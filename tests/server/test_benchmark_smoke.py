"""The benchmark harness runs and produces figures (tiny numbers; no timing asserted)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from server import benchmark
from server.benchmark_worker import _child_env, purchase_events


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_benchmark_redirect_and_token_figures_are_produced(
    settings_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "figures.json"
    database = settings_env["CODEQR_DATABASE_URL"]

    status = benchmark.main(
        [
            "--duration", "1",
            "--connections", "4",
            "--only", "redirect",
            "--only", "token",
            "--database-url", database,
            "--json", str(out),
        ]
    )  # fmt: skip

    printed = capsys.readouterr().out
    assert status == 0
    assert "redirect+click:" in printed
    assert "bare 302:" in printed
    assert "-> none lost" in printed
    assert "bearer check:" in printed
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    assert figures["redirect+click"]["value"] > 0
    assert figures["redirect+click"]["baseline"] > 0
    assert figures["bearer check"]["value"] > 0


def test_benchmark_worker_figure_is_produced(
    settings_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = settings_env["CODEQR_DATABASE_URL"]
    # Several worker processes on PostgreSQL; SQLite keeps its default of one.
    processes = "2" if database.startswith("postgresql") else "1"
    status = benchmark.main(
        [
            "--only", "worker",
            "--purchases", "3",
            "--database-url", database,
            "--worker-processes", processes,
        ]
    )  # fmt: skip

    printed = capsys.readouterr().out
    assert status == 0
    assert "worker (purchase events):" in printed
    assert "9 of 9 preloaded events handled" in printed
    assert "done 9, skipped 0, retried 0, dead 0" in printed
    # Several processes run one worker loop each, as under codeqr serve --workers N.
    assert f"; {processes} process(es) x 1 thread(s);" in printed
    peaks = re.search(r"peak RSS per process (\d+(?:, \d+)*) MB", printed)
    assert peaks is not None
    # The workers' own memory, not pytest's (which exec would otherwise pass on).
    assert all(20 < int(mb) < 300 for mb in peaks.group(1).split(", ")), printed


def test_benchmark_worker_processes_default_to_one_per_cpu_on_postgresql() -> None:
    assert benchmark.parse_args([]).worker_processes is None
    assert benchmark.parse_args(["--worker-processes", "3"]).worker_processes == 3
    postgres = "postgresql://postgres@127.0.0.1/postgres"

    assert benchmark.worker_processes(postgres, None) == (os.cpu_count() or 1)
    assert benchmark.worker_processes("sqlite:////tmp/bench.db", None) == 1
    assert benchmark.worker_processes(postgres, 3) == 3
    assert benchmark.worker_processes("sqlite:////tmp/bench.db", 2) == 2
    assert benchmark.worker_processes(postgres, 0) == 1


def test_benchmark_worker_processes_never_get_a_stripe_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEQR_STRIPE_API_KEY", "sk_test_not_for_the_benchmark")
    monkeypatch.setenv("CODEQR_STRIPE_API_BASE", "https://api.stripe.com")

    env = _child_env("postgresql://postgres@127.0.0.1/bench")

    assert env["CODEQR_STRIPE_API_KEY"] == ""
    assert env["CODEQR_STRIPE_API_BASE"] == "http://127.0.0.1:9"
    assert env["CODEQR_DATABASE_URL"] == "postgresql://postgres@127.0.0.1/bench"


def test_benchmark_purchase_events_share_one_payment() -> None:
    customer, checkout, invoice = purchase_events(7, "click-id")

    assert [e["type"] for e in (customer, checkout, invoice)] == [
        "customer.created",
        "checkout.session.completed",
        "invoice.paid",
    ]
    assert customer["data"]["object"]["metadata"]["codeqrClickId"] == "click-id"
    assert checkout["data"]["object"]["invoice"] == invoice["data"]["object"]["id"]


def test_benchmark_without_wrk_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")

    status = benchmark.main(["--only", "redirect"])

    assert status == 2
    assert "apt-get install -y wrk" in capsys.readouterr().err
