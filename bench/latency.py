"""Landing -> processed latency with the full stack: receiver + one dagster-daemon.

Per backend (Postgres: app DB ``wa_bench_latency`` + Dagster DB ``wa_bench_latency_dagster``
derived by ``wa-dev up``'s own code; SQLite: both under a fresh /tmp folder):

1. migrate, prepare DAGSTER_HOME and bind demo numbers with the main job's functions
   (``wa_dev.stack``, ``wa_dev.feed``), start ``wa-onboarding serve`` and ``dagster-daemon run``
   with the main job's ``Services``
   (no webserver), with ``PROCESSING_IDLE_EXIT_SECONDS`` small (default 5 s);
2. warm-up: one webhook, wait until processed (recorded as "cold" sample), wait idle;
3. (a) steady stream: ``simulate.send_stream`` at ``--rate`` webhooks/s for ``--duration`` s;
   latency = ``processed_at - received_at`` of the stream's rows, reported for all of them
   and for only those landed after the first processing run of the stream started;
4. (b) from idle: ``--samples`` single webhooks, each sent after the previous processing run
   ended and the system stayed idle ``--idle-gap`` s (> PROCESSING_IDLE_EXIT_SECONDS), at
   least ``--spacing`` s apart; each one's latency is split using the Dagster run record:
   landed -> run created (sensor tick), created -> started (queue + run process start),
   started -> processed (the loop).

Also the CPU used by the stack (receiver + daemon + run processes, and Postgres) while idle
and while streaming.

Usage (about 5 minutes per backend with the defaults):
    .venv/bin/python bench/latency.py                       # Postgres then SQLite
    .venv/bin/python bench/latency.py --backends postgres   # Postgres only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import (BENCH_SECRET, VENV_BIN, bench_database, db_url, drop_db, free_port, machine_info, save_results,
                     service_env)
from _common import cpu_snapshot

import sqlalchemy as sa

from wa_core.reporting.stats import percentile

APP_DB = "wa_bench_latency"
PROC_JOB = "process_webhooks"


def stamp() -> str:
    return time.strftime("%H:%M:%S")


class Stack:
    def __init__(self, backend: str, idle_exit: float) -> None:
        from wa_dev.stack import Services, prepare_dagster_home

        self.backend = backend
        self.data_dir = Path(f"/tmp/wa_bench_latency_{backend}")
        for key in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL", "REDIS_URL"):
            os.environ.pop(key, None)
        if backend == "postgres":
            drop_db(APP_DB + "_dagster")  # prepare_dagster_home creates it again
        self.settings = bench_database(backend, APP_DB, self.data_dir, orgs=3, processing_idle_exit_seconds=idle_exit)
        url = db_url(APP_DB) if backend == "postgres" else None
        env = service_env(self.data_dir, url, PROCESSING_IDLE_EXIT_SECONDS=str(idle_exit))
        self.home = prepare_dagster_home(self.settings, env)  # creates <db>_dagster on Postgres
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/whatsapp/webhook"
        self.services = Services(env, self.data_dir / "logs")
        from wa_core.db.engine import create_sync_engine

        self.engine = create_sync_engine(self.settings)
        # the bench reads Dagster's run records with the same instance settings as the daemon
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        if "DAGSTER_POSTGRES_URL" in env:
            os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
        self.instance = None

    def start(self) -> None:
        from wa_dev.stack import wait_http

        t0 = time.monotonic()
        self.services.start("receiver", [str(VENV_BIN / "wa-onboarding"), "serve", "--host", "127.0.0.1", "--port", str(self.port)])
        self.services.start("dagster-daemon", [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        wait_http(f"http://127.0.0.1:{self.port}/readyz", self.services, 60)
        from dagster import DagsterInstance

        self.instance = DagsterInstance.get()
        print(f"[{stamp()}] {self.backend}: receiver ready after {time.monotonic() - t0:.1f}s; daemon started", flush=True)

    def stop(self) -> None:
        self.services.stop()
        if self.instance is not None:
            self.instance.dispose()
        self.engine.dispose()

    def pids(self) -> list[int]:
        return [p.pid for _, p in self.services.procs]

    # --- Dagster run records -----------------------------------------------------------
    def runs(self, created_after: datetime | None = None):
        from dagster import RunsFilter

        return sorted(
            self.instance.get_run_records(RunsFilter(job_name=PROC_JOB, created_after=created_after)),
            key=lambda r: r.create_timestamp,
        )

    def in_flight(self) -> int:
        from dagster import DagsterRunStatus, RunsFilter

        statuses = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
        return self.instance.get_runs_count(RunsFilter(job_name=PROC_JOB, statuses=statuses))

    def wait_no_run(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self.in_flight():
            if time.monotonic() > deadline:
                raise RuntimeError("a processing run is still in flight")
            self.services.check()
            time.sleep(0.5)

    # --- app database -------------------------------------------------------------------
    def send_one(self) -> tuple[str, float]:
        import httpx

        from wa_core.meta.signature import sign
        from wa_dev.simulate import SyntheticStream, synthetic_numbers

        body = SyntheticStream(synthetic_numbers(3)).next_body()
        rid = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, BENCH_SECRET), "X-Request-Id": rid}
        r = httpx.post(self.url, content=body, headers=headers, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"receiver answered {r.status_code}: {r.text[:200]}")
        return rid, time.time()

    def wait_row(self, rid: str, timeout: float = 180):
        from wa_core.db.schema import whatsapp_webhook_logs as logs

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.services.check()
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(logs.c.status, logs.c.received_at, logs.c.processed_at).where(logs.c.request_id == rid)).first()
            if row is not None and row.status != "pending" and row.processed_at is not None:
                return _aware(row.received_at), _aware(row.processed_at), row.status
            time.sleep(0.1)
        raise RuntimeError(f"webhook {rid} not processed within {timeout:.0f}s")

    def wait_drained(self, timeout: float = 300) -> bool:
        from wa_dev.stack import wait_processed

        return wait_processed(self.settings, timeout, self.services)

    def latencies_since(self, since: datetime) -> list[tuple[datetime, float | None, str]]:
        from wa_core.db.schema import whatsapp_webhook_logs as logs

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(logs.c.received_at, logs.c.processed_at, logs.c.status).where(logs.c.received_at >= since)
            ).all()
        out = []
        for r in rows:
            rec = _aware(r.received_at)
            out.append((rec, (_aware(r.processed_at) - rec).total_seconds() if r.processed_at else None, r.status))
        return out


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def cpu_window(stack: Stack) -> dict:
    snap = cpu_snapshot(stack.pids())
    own = resource.getrusage(resource.RUSAGE_SELF)
    snap["bench"] = own.ru_utime + own.ru_stime
    return snap


def cores(before: dict, after: dict, seconds: float) -> dict:
    """Cores used over a window: the stack (receiver + daemon + runs), Postgres, this bench
    process (load generator), and everything else on the machine."""
    d = {k: (after[k] - before[k]) / seconds for k in before}
    d["other"] = max(0.0, d.pop("machine") - d["server"] - d["postgres"] - d["bench"])
    return {k: round(v, 3) for k, v in d.items()}


def run_sample(stack: Stack, label: str) -> dict:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    rid, _sent = stack.send_one()
    received, processed, status = stack.wait_row(rid)
    latency = (processed - received).total_seconds()
    runs = [r for r in stack.runs(created_after=before)]
    sample = {"label": label, "latency_s": latency, "status": status, "received_at": received.isoformat()}
    if runs:
        run = runs[0]
        created = _aware(run.create_timestamp)
        sample["to_run_created_s"] = (created - received).total_seconds()
        if run.start_time:
            started = datetime.fromtimestamp(run.start_time, timezone.utc)
            sample["created_to_started_s"] = (started - created).total_seconds()
            sample["started_to_processed_s"] = (processed - started).total_seconds()
        sample["run_id"] = run.dagster_run.run_id
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in sample.items() if k.endswith("_s") and k != "latency_s")
    print(f"[{stamp()}] {label}: landed->processed {latency:.2f}s ({parts})", flush=True)
    return sample


def bench_backend(backend: str, args) -> dict:
    stack = Stack(backend, args.idle_exit)
    result: dict = {"backend": backend, "idle_exit_seconds": args.idle_exit, "problems": []}
    try:
        stack.start()
        # warm-up: first webhook after the stack started (daemon's first ticks, cold imports)
        result["cold"] = run_sample(stack, "cold start (first webhook after stack start)")
        stack.wait_no_run()

        # idle CPU of the stack (no run in flight)
        cpu0, t0 = cpu_window(stack), time.monotonic()
        time.sleep(max(args.idle_exit + 3, 10))
        result["idle_cpu_cores"] = cores(cpu0, cpu_window(stack), time.monotonic() - t0)
        print(f"[{stamp()}] idle CPU (cores): {result['idle_cpu_cores']}", flush=True)
        stack.wait_no_run()

        # (a) steady stream
        from wa_dev.simulate import SendReport, SyntheticStream, send_stream, synthetic_numbers

        stream_start = datetime.now(timezone.utc)
        report = SendReport()
        print(f"[{stamp()}] steady stream: {args.rate:g}/s for {args.duration:g}s", flush=True)
        cpu0, t0 = cpu_window(stack), time.monotonic()
        asyncio.run(send_stream(stack.url, BENCH_SECRET, SyntheticStream(synthetic_numbers(3)), args.rate, args.duration, report, 32))
        stream_cpu = cores(cpu0, cpu_window(stack), time.monotonic() - t0)
        print(f"[{stamp()}] stream sent: {report.summary()}", flush=True)
        drained = stack.wait_drained(300)
        rows = stack.latencies_since(stream_start)
        runs = stack.runs(created_after=stream_start - timedelta(seconds=1))
        first_start = next((datetime.fromtimestamp(r.start_time, timezone.utc) for r in runs if r.start_time), None)
        lat_all = [l for _, l, _ in rows if l is not None]
        lat_after = [l for rec, l, _ in rows if l is not None and first_start and rec >= first_start]
        steady = {
            "rate": args.rate, "duration": args.duration, "sent": report.sent, "accepted": report.delivered,
            "gave_up": report.gave_up, "rows": len(rows), "unprocessed_rows": sum(1 for _, l, _ in rows if l is None),
            "statuses": {s: sum(1 for _, _, st in rows if st == s) for s in {st for _, _, st in rows}},
            "drained": drained, "processing_runs": len(runs),
            "first_run_started_after_s": (first_start - stream_start).total_seconds() if first_start else None,
            "receiver_p50_ms": percentile(report.latencies_ms, 50), "receiver_p99_ms": percentile(report.latencies_ms, 99),
            "all": {"n": len(lat_all), "p50": percentile(lat_all, 50), "p95": percentile(lat_all, 95), "max": max(lat_all, default=None)},
            "after_first_run_start": {"n": len(lat_after), "p50": percentile(lat_after, 50), "p95": percentile(lat_after, 95),
                                      "max": max(lat_after, default=None)},
            "cpu_cores": stream_cpu,
        }
        result["steady"] = steady
        a, b = steady["after_first_run_start"], steady["all"]
        print(f"[{stamp()}] steady: {steady['rows']} rows, {steady['processing_runs']} run(s), first run started "
              f"{steady['first_run_started_after_s']:.1f}s after the stream began; after it: p50 {a['p50']:.2f}s p95 {a['p95']:.2f}s "
              f"max {a['max']:.2f}s (n={a['n']}); all rows: p50 {b['p50']:.2f}s p95 {b['p95']:.2f}s max {b['max']:.2f}s; "
              f"CPU cores {steady['cpu_cores']}", flush=True)
        if not drained or steady["unprocessed_rows"] or report.gave_up or steady["statuses"].get("processed") != len(rows):
            result["problems"].append(f"steady stream: {steady}")

        # (b) from idle
        samples = []
        last_send = 0.0
        for i in range(args.samples):
            stack.wait_no_run()
            time.sleep(args.idle_gap)
            pause = last_send + args.spacing - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            last_send = time.monotonic()
            samples.append(run_sample(stack, f"from idle #{i + 1}"))
        lat = [s["latency_s"] for s in samples]
        result["idle"] = {"samples": samples, "p50": percentile(lat, 50), "p95": percentile(lat, 95), "max": max(lat, default=None),
                          "idle_gap_s": args.idle_gap, "spacing_s": args.spacing}
        print(f"[{stamp()}] from idle: p50 {result['idle']['p50']:.2f}s, p95 {result['idle']['p95']:.2f}s, max {result['idle']['max']:.2f}s", flush=True)

        from dagster import DagsterRunStatus, RunsFilter

        failed = stack.instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]))
        result["dagster_failed_runs"] = failed
        if failed:
            result["problems"].append(f"{failed} Dagster run(s) failed or were cancelled; see {stack.data_dir / 'logs'}")
    except Exception as exc:  # noqa: BLE001 - report, stop the stack, go on with the next backend
        result["problems"].append(f"{type(exc).__name__}: {exc}")
        print(f"[{stamp()}] ERROR: {exc}", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        if backend == "postgres" and not args.keep:
            drop_db(APP_DB)
            drop_db(APP_DB + "_dagster")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgres,sqlite")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--idle-exit", type=float, default=5.0, help="PROCESSING_IDLE_EXIT_SECONDS for the stack")
    ap.add_argument("--idle-gap", type=float, default=10.0, help="idle seconds after the last run ended, before a sample")
    ap.add_argument("--spacing", type=float, default=20.0, help="minimum seconds between two idle samples")
    ap.add_argument("--keep", action="store_true", help="keep the Postgres databases and /tmp folders")
    args = ap.parse_args()
    out = {"machine": machine_info(), "args": vars(args), "backends": []}
    for backend in args.backends.split(","):
        out["backends"].append(bench_backend(backend, args))
    path = save_results("latency", out)
    print(f"\nresults: {path}")
    problems = [p for b in out["backends"] for p in b["problems"]]
    for p in problems:
        print(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
