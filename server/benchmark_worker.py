"""The worker figure of the benchmark: purchases preloaded into the inbox, then drained
by the worker's own batch function (one transaction per event, as in production) in
several processes with ``worker_concurrency`` threads each, as ``codeqr serve --workers
N`` runs them.

A purchase is three Stripe events shaped like Stripe's documented objects: the customer
created by the merchant's backend with the CodeQR keys in its metadata, the completed
checkout session (paid, subscription mode) and the first paid invoice of the same
payment. Each purchase comes from its own click, so each makes a customer, a lead and one
sale (the checkout and the invoice are the same payment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.clicks import PendingClick, store_clicks
from server.models import utcnow
from server.redirects import new_click_id

ACCOUNT = "acct_benchworker01"
COUNTS = ("done", "skipped", "retried", "dead")  # the outcomes a drain adds up


def preload_purchases(purchases: int) -> int:
    """Create the workspace, a link, one click per purchase and the purchases' events in
    the inbox; returns how many events were stored."""
    from server.cli import create_link, create_workspace
    from server.db import get_engine
    from stripe_app import inbox

    workspace = create_workspace(
        "worker-bench", plan="business", stripe_account=ACCOUNT
    )
    assert workspace.id is not None
    link = create_link("worker-bench", "https://shop.example/", key="wb")
    clicks = [
        PendingClick(new_click_id(), workspace.id, int(link["id"]), utcnow())
        for _ in range(purchases)
    ]
    for start in range(0, len(clicks), 500):
        store_clicks(clicks[start : start + 500])

    engine = get_engine()
    stored = 0
    for number, click in enumerate(clicks):
        for event in purchase_events(number, click.id):
            stored += inbox.store(engine, _incoming(event))
    return stored


def purchase_events(number: int, click_id: str) -> list[dict[str, Any]]:
    created = int(time.time())
    customer, invoice = f"cus_bench{number:07d}", f"in_bench{number:07d}"
    intent, charge = f"pi_bench{number:07d}", f"ch_bench{number:07d}"
    keys = {"codeqrCustomerId": f"user_{number}", "codeqrClickId": click_id}
    return [
        _event(
            f"evt_wbc{number:07d}",
            "customer.created",
            created,
            {
                "id": customer,
                "object": "customer",
                "email": f"buyer{number}@example.com",
                "name": f"Buyer {number}",
                "metadata": keys,
            },
        ),
        _event(
            f"evt_wbs{number:07d}",
            "checkout.session.completed",
            created + 1,
            {
                "id": f"cs_bench{number:07d}",
                "object": "checkout.session",
                "mode": "subscription",
                "payment_status": "paid",
                "status": "complete",
                "amount_total": 4900,
                "currency": "usd",
                "customer": customer,
                "customer_details": {"email": f"buyer{number}@example.com"},
                "invoice": invoice,
                "payment_intent": intent,
                "metadata": keys,
            },
        ),
        _event(
            f"evt_wbi{number:07d}",
            "invoice.paid",
            created + 2,
            {
                "id": invoice,
                "object": "invoice",
                "amount_paid": 4900,
                "currency": "usd",
                "customer": customer,
                "payment_intent": intent,
                "charge": charge,
                "status": "paid",
                "status_transitions": {"paid_at": created + 2},
            },
        ),
    ]


def _event(
    event_id: str, kind: str, created: int, obj: dict[str, Any]
) -> dict[str, Any]:
    obj.setdefault("livemode", False)
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "account": ACCOUNT,
        "created": created,
        "livemode": False,
        "type": kind,
        "data": {"object": obj},
    }


def _incoming(event: dict[str, Any]) -> Any:
    from stripe_app.inbox import IncomingEvent, ordering_key

    return IncomingEvent(
        id=event["id"],
        type=event["type"],
        account=event["account"],
        livemode=event["livemode"],
        created=event["created"],
        payload=json.dumps(event),
        ordering_key=ordering_key(event),  # as the webhook receiver stores it
    )


@dataclass
class DrainResult:
    """What the worker processes did, summed, and how long until nothing was pending."""

    elapsed: float
    processes: int
    threads: int
    totals: dict[str, int]
    peak_rss_mb: list[float]
    pending: int

    @property
    def handled(self) -> int:
        """Events finished for good (a retried event is counted when it ends)."""
        return self.totals["done"] + self.totals["skipped"] + self.totals["dead"]

    def summary(self) -> str:
        counts = ", ".join(f"{name} {count:,}" for name, count in self.totals.items())
        rss = ", ".join(f"{mb:.0f}" for mb in self.peak_rss_mb)
        return (
            f"{counts}; {self.processes} process(es) x {self.threads} thread(s); "
            f"peak RSS per process {rss} MB"
        )


_CHILD = (
    "import sys; from server.benchmark_worker import worker_process; "
    "raise SystemExit(worker_process(sys.argv[1:]))"
)


def drain_with_processes(
    database_url: str,
    workdir: Path,
    processes: int,
    deadline_seconds: float = 600.0,
) -> DrainResult:
    """Drain the inbox with ``processes`` worker processes on the same database, as
    ``codeqr serve --workers N`` runs one worker per process: each one runs
    ``worker_concurrency`` threads of the production batch loop. The processes start,
    import and connect first; the clock runs from the moment they are told to go until
    the last one has seen no pending event."""
    from stripe_app.worker import one_loop_per_process

    env = _child_env(database_url)
    one_loop_per_process(processes, env)  # as codeqr serve --workers N does
    children: list[subprocess.Popen[str]] = []
    try:
        for number in range(processes):
            children.append(_spawn(workdir, number, deadline_seconds, env))
        for number, child in enumerate(children):
            _expect_line(child, "ready", workdir / f"worker-{number}.err")
        started = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.close()
        reports = [
            json.loads(_expect_line(child, "{", workdir / f"worker-{number}.err"))
            for number, child in enumerate(children)
        ]
        elapsed = time.perf_counter() - started
        for child in children:
            child.wait(timeout=30)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()  # our own child, by its handle
                child.wait()
    totals = {name: sum(r[name] for r in reports) for name in COUNTS}
    return DrainResult(
        elapsed=elapsed,
        processes=processes,
        threads=max(r["threads"] for r in reports),
        totals=totals,
        peak_rss_mb=[r["peak_rss_mb"] for r in reports],
        pending=_pending(),
    )


def _spawn(
    workdir: Path, number: int, deadline_seconds: float, env: dict[str, str]
) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-c",
        _CHILD,
        str(workdir / f"worker-{number}.log"),
        str(deadline_seconds),
    ]
    with (workdir / f"worker-{number}.err").open("wb") as errors:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and args)
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )


def _child_env(database_url: str) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env.update(
        {
            "CODEQR_DATABASE_URL": database_url,
            "CODEQR_LOG_LEVEL": "INFO",
            # No Stripe look-ups: nothing listens there, and no key to send anyway.
            "CODEQR_STRIPE_API_KEY": "",
            "CODEQR_STRIPE_API_BASE": "http://127.0.0.1:9",
            "PYTHONPATH": os.pathsep.join(
                part for part in (root, env.get("PYTHONPATH")) if part
            ),
        }
    )
    return env


def _expect_line(child: subprocess.Popen[str], prefix: str, errors: Path) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith(prefix):
        from server.benchmark import BenchmarkError

        child.wait(timeout=30)
        tail = errors.read_text(errors="replace")[-2000:] if errors.exists() else ""
        raise BenchmarkError(
            f"worker process exited ({child.returncode}) instead of {prefix!r}: {tail}"
        )
    return line


def worker_process(argv: list[str]) -> int:
    """One benchmark worker process: ``LOG_FILE DEADLINE_SECONDS``. Imports and
    connects, says ``ready``, waits for ``go`` on stdin, drains, then prints its
    counts and peak RSS as one JSON line."""

    from server.benchmark import log_to_file
    from stripe_app import registry
    from stripe_app.worker import worker_concurrency, worker_engine

    log_to_file(Path(argv[0]))
    deadline_seconds = float(argv[1])
    registry.load_handlers()
    with worker_engine().connect():
        pass  # the pool's first connection, before the clock runs
    threads = worker_concurrency()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1

    deadline = time.monotonic() + deadline_seconds
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-worker") as pool:
        results = list(pool.map(lambda _: _drain_loop(deadline), range(threads)))
    report = {name: sum(r[name] for r in results) for name in COUNTS}
    print(
        json.dumps(report | {"threads": threads, "peak_rss_mb": _own_peak_rss_mb()}),
        flush=True,
    )
    return 0


def _drain_loop(deadline: float) -> dict[str, int]:
    """The worker's loop without its waits: batch after batch; when a claim comes back
    empty while events are still pending (their customers are held by another loop,
    or retries wait for their backoff), look again shortly."""
    from stripe_app.worker import process_batch

    counts = dict.fromkeys(COUNTS, 0)
    while time.monotonic() < deadline:
        report = process_batch()
        for name in COUNTS:
            counts[name] += getattr(report, name)
        if report.claimed == 0:
            if not _pending():
                break
            time.sleep(0.01)
    return counts


def _pending() -> int:
    from sqlalchemy import func, select

    from server.db import get_engine
    from server.models import InboxStatus
    from stripe_app.inbox import TABLE

    with get_engine().connect() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(TABLE)
            .where(TABLE.c.status == InboxStatus.PENDING)
        ).scalar_one()
    return int(count)


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """A process's peak resident memory (``VmHWM`` in /proc), None where there is no
    /proc. For this process it is also the right figure after exec: ``ru_maxrss``
    survives exec and reports the parent's peak when that was higher (a pytest run
    showed 341 MB for a 90 MB worker)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _own_peak_rss_mb() -> float:
    import resource

    own = peak_rss_mb()
    if own is not None:
        return own
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
