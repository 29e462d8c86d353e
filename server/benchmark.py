"""The benchmark of issue #2: ``python -m server.benchmark``.

Each figure is printed beside its baseline and the ratio:

1. ``redirect``: ``GET /{key}`` with clicks recorded vs a bare Starlette 302 route, both
   served by uvicorn with the same settings (uvloop, httptools, one worker, no access
   log; the product with our bound on request heads, as ``codeqr serve`` runs it), loaded
   by ``wrk``. Afterwards the product is stopped cleanly and the clicks in the
   database are compared with the clicks it acknowledged (and with the 302s wrk read).
2. ``webhook``: ``POST /stripe/webhook`` (verify + inbox) vs a bare route that verifies the
   signature with the SDK and does one insert. Every request is a distinct event, signed
   by a wrk Lua script (HMAC-SHA256 in Lua).
3. ``worker``: N purchases (customer.created, checkout.session.completed, invoice.paid)
   preloaded into the inbox, then drained by the worker's own batch function in
   ``--worker-processes`` processes (default: one per CPU on PostgreSQL) of
   ``WORKER_CONCURRENCY`` threads each, as ``codeqr serve --workers N`` runs them.
4. ``token``: ``oauth.principal.authenticate_bearer`` per call vs a bare indexed SELECT by
   primary key, in process.

Servers run as subprocesses on free 127.0.0.1 ports and are stopped by their own PID; each
one's peak RSS (VmHWM) is reported. The run uses a scratch database: a temporary SQLite
file, or with ``--database-url postgresql://…`` a new database on that server, dropped at
the end. Load is bounded by ``--duration`` (seconds per figure and server)."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server.http_protocol import HTTP_PROTOCOL

FIGURES = ("redirect", "webhook", "worker", "token")
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
WEBHOOK_SECRET = "whsec_bench_" + "0" * 32
RSS_TARGET_MB = 300


class BenchmarkError(Exception):
    """The benchmark could not run; the message says what to do."""


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    target: str
    higher_is_better: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        # A rate: product / baseline. A cost: how many times the baseline's cost.
        return self.value / self.baseline if self.baseline else 0.0

    def line(self) -> str:
        return (
            f"{self.name}: {_number(self.value)} {self.unit} | {self.baseline_name}: "
            f"{_number(self.baseline)} {self.unit} | ratio {self.ratio:.2f} ({self.target})"
        )


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A uvicorn subprocess on 127.0.0.1 with the benchmark's fixed settings."""

    app: str
    env: dict[str, str]
    log_path: Path
    # The product runs as `codeqr serve` runs it (httptools with our bound on request
    # heads); baselines on uvicorn's own httptools, so the bound's cost is the product's.
    http: str = "httptools"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str) -> None:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            self.http,
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and args)
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_ready(ready_path)

    def _wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchmarkError(
                    f"{self.app} exited at start-up; see {self.log_path}"
                )
            try:
                httpx.get(self.url + path, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise BenchmarkError(
            f"{self.app} did not answer within 90 s; see {self.log_path}"
        )

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        from server.benchmark_worker import peak_rss_mb

        assert self.process is not None
        return peak_rss_mb(self.process.pid) or 0.0

    def stop(self) -> int:
        """SIGTERM to this server's own PID (a clean shutdown), then wait for it."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


# --- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkRun:
    requests: int
    seconds: float
    bad_status: int
    socket_errors: int
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchmarkError(
            "wrk is not installed: install it with `apt-get install -y wrk` (Debian, "
            "Ubuntu) or `brew install wrk` (macOS), then run the benchmark again"
        )
    return path


def run_wrk(
    server: Server,
    path: str,
    seconds: float,
    *,
    connections: int,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> WrkRun:
    command = [
        require_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(server.url + path)
    if script_args:
        command += ["--", *script_args]
    cpu_before = server.cpu_seconds()
    output = subprocess.run(  # noqa: S603 (wrk from PATH, our own args)
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    return _parse_wrk(output, server.cpu_seconds() - cpu_before)


def _parse_wrk(output: str, cpu_seconds: float) -> WrkRun:
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s|m)\b", output)
    if done is None:
        raise BenchmarkError(f"could not read wrk's output:\n{output}")
    seconds = float(done.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[done.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkRun(
        requests=int(done.group(1)),
        seconds=seconds,
        bad_status=int(bad.group(1)) if bad else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        cpu_seconds=cpu_seconds,
    )


@dataclass
class Load:
    """Alternating rounds of wrk against a product server and its baseline."""

    product: list[WrkRun] = field(default_factory=list)
    baseline: list[WrkRun] = field(default_factory=list)

    @staticmethod
    def total(runs: list[WrkRun]) -> WrkRun:
        return WrkRun(
            requests=sum(r.requests for r in runs),
            seconds=sum(r.seconds for r in runs),
            bad_status=sum(r.bad_status for r in runs),
            socket_errors=sum(r.socket_errors for r in runs),
            cpu_seconds=sum(r.cpu_seconds for r in runs),
        )


def alternate(
    product: Server,
    baseline: Server,
    path: str,
    seconds: float,
    connections: int,
    *,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: Mapping[str, Sequence[str]] | None = None,
) -> Load:
    """Share the time between both servers in rounds, so that whatever else runs on the
    machine weighs on both alike."""
    rounds = max(1, min(6, round(seconds / 5)))
    load = Load()
    for _ in range(rounds):
        for runs, server in ((load.baseline, baseline), (load.product, product)):
            run = run_wrk(
                server,
                path,
                seconds / rounds,
                connections=connections,
                headers=headers,
                script=script,
                script_args=(script_args or {}).get(server.app, ()),
            )
            runs.append(run)
    return load


def cpu_note(load: Load) -> str:
    product, baseline = Load.total(load.product), Load.total(load.baseline)
    per_product = product.cpu_seconds / max(product.requests, 1) * 1e6
    per_baseline = baseline.cpu_seconds / max(baseline.requests, 1) * 1e6
    return (
        f"server process CPU per request: {per_product:.0f} µs vs {per_baseline:.0f} µs "
        f"(ratio {per_baseline / per_product if per_product else 0:.2f})"
    )


# --- the scratch database and the environment -------------------------------------------------


@contextmanager
def scratch_database(url: str | None, workdir: Path) -> Iterator[str]:
    """A new empty database for the run, removed afterwards."""
    if not url or url.startswith("sqlite"):
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from server.db import normalise_url

    name = f"codeqr_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        from server.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def product_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CODEQR_DATABASE_URL": database_url,
            "CODEQR_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CODEQR_BROKER_URL": "memory://",
            "CODEQR_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
            "CODEQR_SECRET_KEY": "bench-" + secrets.token_hex(16),
            # Nothing listens there: the benchmark never talks to Stripe.
            "CODEQR_STRIPE_API_BASE": "http://127.0.0.1:9",
            "CODEQR_STRIPE_API_KEY": "",
            "CODEQR_LOG_LEVEL": "INFO",
            "CODEQR_ENVIRONMENT": "production",
        }
    )
    env.update(extra)
    return env


def use_database(database_url: str, public_url: str = "http://127.0.0.1") -> None:
    """Point this process's settings at the scratch database."""
    from server import db
    from server.settings import reset_settings

    os.environ["CODEQR_DATABASE_URL"] = database_url
    os.environ["CODEQR_PUBLIC_URL"] = public_url
    os.environ.setdefault("CODEQR_SECRET_KEY", "bench-" + secrets.token_hex(16))
    reset_settings()
    db.dispose_engines()


def log_to_file(path: Path) -> None:
    """The app's logging (INFO, as in production) into a file instead of the terminal."""
    import logging

    from server.log_config import configure_logging

    configure_logging("INFO")
    stream = path.open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


# --- 1. redirects -----------------------------------------------------------------------------


def bench_redirect(
    database_url: str, workdir: Path, seconds: float, connections: int
) -> Figure:
    product = Server(
        "server.app:app", {}, workdir / "redirect-product.log", http=HTTP_PROTOCOL
    )
    product.env = product_env(database_url, product.port)
    baseline = Server(
        "server.benchmark_baseline:redirect_app",
        product_env(database_url, product.port),
        workdir / "redirect-baseline.log",
    )
    link_id = _prepare_redirect(database_url, product.url)

    try:
        product.start("/healthz")
        baseline.start("/warm")
        _check_redirect(product)
        headers = {"User-Agent": BROWSER_UA}
        warm = [
            run_wrk(s, "/go", 1, connections=connections, headers=headers)
            for s in (baseline, product)
        ]
        load = alternate(
            product, baseline, "/go", seconds, connections, headers=headers
        )
        rss = (product.peak_rss_mb(), baseline.peak_rss_mb())
    finally:
        product.stop()
        baseline.stop()

    served = Load.total([warm[1], *load.product]).requests
    figure = _redirect_figure(load)
    figure.notes.append(cpu_note(load))
    figure.notes.append(_click_check(product, database_url, link_id, served))
    figure.notes.append(_rss_note(rss))
    return figure


def _prepare_redirect(database_url: str, public_url: str) -> int:
    from server import db
    from server.cli import create_link, create_workspace

    use_database(database_url, public_url)
    db.upgrade()
    create_workspace("bench", plan="business")
    link = create_link(
        "bench",
        "https://shop.example/pricing?plan=pro#buy",
        key="go",
        track_conversion=True,
    )
    return int(link["id"])


def _check_redirect(server: Server) -> None:
    response = httpx.get(server.url + "/go", headers={"user-agent": BROWSER_UA})
    if response.status_code != 302 or "cq_id=" not in response.headers.get(
        "location", ""
    ):
        raise BenchmarkError(
            f"GET /go answered {response.status_code} {response.headers.get('location')!r};"
            " expected a 302 with cq_id"
        )


def _redirect_figure(load: Load) -> Figure:
    return _load_figure(load, "redirect+click", "bare 302", accepted="2xx/3xx")


def _load_figure(load: Load, name: str, baseline_name: str, *, accepted: str) -> Figure:
    """Requests per second of product and baseline, with a note for each side that
    answered outside ``accepted`` or lost sockets."""
    product, baseline = Load.total(load.product), Load.total(load.baseline)
    figure = Figure(
        name=name,
        value=product.rate,
        unit="req/s",
        baseline_name=baseline_name,
        baseline=baseline.rate,
        target="target >= 0.50",
    )
    for label, run in (("product", product), ("baseline", baseline)):
        if run.bad_status or run.socket_errors:
            figure.notes.append(
                f"{label}: {run.bad_status} responses not {accepted}, "
                f"{run.socket_errors} socket errors"
            )
    return figure


def _click_check(
    server: Server, database_url: str, link_id: int, read_by_wrk: int
) -> str:
    from sqlmodel import Session, func, select

    from server import db
    from server.models import Click

    use_database(database_url)
    with Session(db.get_engine()) as session:
        stored = session.exec(
            select(func.count()).select_from(Click).where(Click.link_id == link_id)
        ).one()
    stopped = re.search(
        r"clicks\.writer\.stopped.*?accepted=(\d+).*?written=(\d+)", server.log_text()
    )
    if stopped is None:
        return f"clicks in database: {stored:,}; the product's stop line is missing (see {server.log_path})"
    accepted, written = int(stopped.group(1)), int(stopped.group(2))
    verdict = "none lost" if stored == accepted == written else "MISMATCH"
    # +1: the check request before the load.
    in_flight = accepted - read_by_wrk - 1
    return (
        f"clicks in database: {stored:,} = acknowledged {accepted:,} -> {verdict} "
        f"(wrk read {read_by_wrk + 1:,} 302s; {in_flight:,} answered after wrk stopped reading)"
    )


def _rss_note(rss: tuple[float, float], label: str = "baseline") -> str:
    product, baseline = rss
    verdict = "ok" if product < RSS_TARGET_MB else "OVER"
    return (
        f"peak RSS: product {product:.0f} MB, {label} {baseline:.0f} MB "
        f"(target < {RSS_TARGET_MB} MB per worker: {verdict})"
    )


# --- 2. webhooks ------------------------------------------------------------------------------


def write_webhook_script(workdir: Path) -> Path:
    from server.benchmark_baseline import SIGNED_WEBHOOKS_LUA

    path = workdir / "signed_webhooks.lua"
    path.write_text(SIGNED_WEBHOOKS_LUA)
    return path


def bench_webhook(
    database_url: str, workdir: Path, seconds: float, connections: int
) -> Figure:
    from server import db

    use_database(database_url)
    db.upgrade()
    product = Server(
        "server.app:app", {}, workdir / "webhook-product.log", http=HTTP_PROTOCOL
    )
    # The in-process worker is off: this figure is acceptance alone (verify + inbox).
    product.env = product_env(database_url, product.port, CODEQR_WORKER_ENABLED="false")
    baseline = Server(
        "server.benchmark_baseline:webhook_app",
        product_env(database_url, product.port),
        workdir / "webhook-baseline.log",
    )
    run_id = uuid.uuid4().hex[:8]
    script_args = {
        product.app: (f"{run_id}p", WEBHOOK_SECRET),
        baseline.app: (f"{run_id}b", WEBHOOK_SECRET),
    }
    try:
        product.start("/healthz")
        baseline.start("/healthz")
        load = alternate(
            product,
            baseline,
            "/stripe/webhook",
            seconds,
            connections,
            script=write_webhook_script(workdir),
            script_args=script_args,
        )
        rss = (product.peak_rss_mb(), baseline.peak_rss_mb())
    finally:
        product.stop()
        baseline.stop()

    figure = _load_figure(
        load, "webhook accept (verify + inbox)", "verify + one insert", accepted="2xx"
    )
    figure.notes.append(cpu_note(load))
    accepted = Load.total(load.product).requests
    figure.notes.append(_inbox_check(database_url, run_id, accepted))
    figure.notes.append(_rss_note(rss))
    return figure


def _inbox_check(database_url: str, run_id: str, read_by_wrk: int) -> str:
    from sqlmodel import Session, func, select

    from server import db
    from server.models import StripeEvent

    use_database(database_url)
    with Session(db.get_engine()) as session:
        stored = session.exec(
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.id.startswith(f"evt_bench_{run_id}p_"))
        ).one()
    return f"events in the inbox: {stored:,} (wrk read {read_by_wrk:,} answers)"


# --- 3. the worker ----------------------------------------------------------------------------


def bench_worker(
    database_url: str, workdir: Path, purchases: int, processes: int | None = None
) -> Figure:
    from server.benchmark_worker import drain_with_processes, preload_purchases

    use_database(database_url)
    log_to_file(workdir / "worker.log")
    from server import db

    db.upgrade()
    events = preload_purchases(purchases)
    processes = worker_processes(database_url, processes)
    result = drain_with_processes(database_url, workdir, processes)
    figure = Figure(
        name="worker (purchase events)",
        value=result.handled / result.elapsed if result.elapsed else 0.0,
        unit="events/s",
        baseline_name="target",
        baseline=500.0,
        target="target: ratio >= 1.00",
    )
    figure.notes.append(
        f"{result.handled:,} of {events:,} preloaded events handled in "
        f"{result.elapsed:.1f} s; {result.summary()}"
    )
    if result.pending:
        figure.notes.append(f"{result.pending:,} events still pending at the deadline")
    return figure


def worker_processes(database_url: str, requested: int | None) -> int:
    """``--worker-processes``, by default one per CPU on PostgreSQL; on SQLite one, the
    single-process deployment it is for (its writers are serialised anyway)."""
    if requested is not None:
        return max(1, requested)
    return 1 if database_url.startswith("sqlite") else os.cpu_count() or 1


# --- 4. bearer tokens -------------------------------------------------------------------------


def bench_token(database_url: str, seconds: float) -> Figure:
    from sqlmodel import Session, select

    from oauth.principal import authenticate_bearer
    from server import db
    from server.cli import create_api_key, create_workspace
    from server.models import ApiKey

    use_database(database_url)
    db.upgrade()
    create_workspace("token-bench", plan="business")
    token = create_api_key("token-bench")
    budget = max(0.5, min(seconds, 10.0)) / 2

    with Session(db.get_engine()) as session:
        key_id = session.exec(select(ApiKey.id)).first()
        assert authenticate_bearer(session, token) is not None

        def check() -> object:
            return authenticate_bearer(session, token)

        def bare() -> object:
            return session.exec(select(ApiKey.id).where(ApiKey.id == key_id)).first()

        per_check = _per_call(check, budget)
        per_select = _per_call(bare, budget)
    return Figure(
        name="bearer check",
        value=per_check,
        unit="µs/call",
        baseline_name="SELECT by primary key",
        baseline=per_select,
        target="times the bare SELECT's cost; lower is better",
        higher_is_better=False,
    )


def _per_call(call: Any, budget: float) -> float:
    for _ in range(50):
        call()
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < budget:
        for _ in range(50):
            call()
        calls += 50
    return (time.perf_counter() - started) / calls * 1e6


# --- the command ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m server.benchmark", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds of load per server and figure (60 for the memory figure)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CODEQR_DATABASE_URL"),
        help="sqlite (default: a temporary file) or postgresql://… (a scratch database "
        "is created on that server and dropped afterwards)",
    )
    parser.add_argument("--only", choices=FIGURES, action="append")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--purchases", type=int, default=2000)
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=None,
        help="worker processes draining the inbox, each with WORKER_CONCURRENCY "
        "threads (default: one per CPU on PostgreSQL, 1 on SQLite)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[Figure]:
    only = args.only or list(FIGURES)
    if {"redirect", "webhook"} & set(only):
        require_wrk()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="codeqr-bench-") as tmp:
        workdir = Path(tmp)
        for name in only:
            (workdir / name).mkdir()
            with scratch_database(args.database_url, workdir / name) as url:
                figure = _run_one(name, url, workdir / name, args)
            _print(figure)
            figures.append(figure)
    return figures


def _run_one(name: str, url: str, workdir: Path, args: argparse.Namespace) -> Figure:
    if name == "redirect":
        return bench_redirect(url, workdir, args.duration, args.connections)
    if name == "webhook":
        return bench_webhook(url, workdir, args.duration, args.connections)
    if name == "worker":
        return bench_worker(url, workdir, args.purchases, args.worker_processes)
    return bench_token(url, args.duration)


def _print(figure: Figure) -> None:
    print(figure.line(), flush=True)
    for note in figure.notes:
        print(f"    {note}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backend = (
        "postgresql" if (args.database_url or "").startswith("postgres") else "sqlite"
    )
    print(
        f"codeqr benchmark: {backend}, {args.duration:g} s per server and figure, "
        f"{args.connections} connections, {os.cpu_count()} CPUs",
        flush=True,
    )
    try:
        figures = run(args)
    except BenchmarkError as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
