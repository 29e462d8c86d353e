"""The benchmark harness runs and produces figures (tiny numbers; no timing asserted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server import benchmark
from server.benchmark_worker import purchase_events


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
    status = benchmark.main(
        [
            "--only", "worker",
            "--purchases", "3",
            "--database-url", settings_env["CODEQR_DATABASE_URL"],
        ]
    )  # fmt: skip

    printed = capsys.readouterr().out
    assert status == 0
    assert "worker (purchase events):" in printed
    assert "9 of 9 preloaded events handled" in printed
    assert "done 9, skipped 0, retried 0, dead 0" in printed


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
