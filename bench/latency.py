"""Landing -> processed latency and idle cost of the whole stack (v2: long-lived runs, NOTIFY).

The stack is laid out as in production (docs/deploy.md): ``wa-onboarding serve``, one Dagster
code server (``dagster api grpc``), ``dagster-webserver`` and ``dagster-daemon`` both loading
the code location from that server (a generated workspace with ``grpc_server``), Dagster on
its own Postgres database. Processing runs are launched by the daemon's sensor (one per shard,
kept alive, rolled over every ``PROCESSING_RUN_MAX_SECONDS``, default 300 s) and run as
children of the code server. Per backend (Postgres by default; ``--backends postgres,sqlite``):

1. migrate, prepare DAGSTER_HOME and bind the demo numbers with ``wa_dev.stack``/``wa_dev.feed``'s functions; start
   the stack; wait until each shard's processing run is STARTED; one webhook (``cold``);
2. steady stream: ``simulate.send_stream`` at ``--rate`` webhooks/s over 3 organizations for
   ``--duration`` s; landing->processed = ``processed_at - received_at`` of its rows;
3. ``--samples`` idle windows of ``--idle`` s (the bar: 300 s), each followed by one webhook
   (its latency is a "from idle" sample). During each window: CPU of the stack's process
   tree (receiver, code server with its run processes, webserver, daemon; reaped children
   included) per service, RSS and PSS summed over the tree every 5 s, Postgres CPU, the rest of
   the machine, loadavg.

Per-organization caps are off by default; ``--org-quota`` (1,000,000) sets both caps high
anyway, so that caps in a local ``.env`` cannot throttle the bar's 6.7 webhooks/s per
organization (``--org-quota 0`` leaves the settings as they are). Every process started is
stopped at the end, also on failure or SIGTERM (process groups, then any descendant left).

Usage (~30 min with the defaults: 5 idle windows of 5 minutes):
    .venv/bin/python bench/latency.py
    .venv/bin/python bench/latency.py --idle 30 --samples 2 --duration 30   # quick iteration
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from _common import BENCH_SECRET, BENCH_TOKEN_KEY, VENV_BIN, drop_db, fresh_db, free_port, machine_info, make_settings, save_results
from _common import cpu_snapshot, memory_snapshot, tree_pids

import sqlalchemy as sa

from wa_core.reporting.stats import percentile

APP_DB = "wa_bench_latency"
PROC_JOB = "process_webhooks"
LOCATION = "wa_pipelines:defs"
SERVICES = ("receiver", "code-server", "dagster-webserver", "dagster-daemon")


def stamp() -> str:
    return time.strftime("%H:%M:%S")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def use_dagster_compute_logs(home: Path) -> None:
    """The reference variant: drop the project's ``compute_logs`` block from ``home``'s
    dagster.yaml, so Dagster's default LocalComputeLogManager (with its tail mirrors) runs."""
    path = home / "dagster.yaml"
    text = path.read_text()
    start = text.index("\ncompute_logs:\n")
    end = text.index("\n\n", start + 1)
    path.write_text(text[:start] + text[end:])


class Stack:
    def __init__(self, backend: str, args, compute_logs: str = "file") -> None:
        from wa_core.db.migrate import upgrade
        from wa_dev.feed import bind_demo_numbers
        from wa_dev.stack import Services, init_dagster_storage, prepare_dagster_home

        self.backend = backend
        self.data_dir = Path(f"/tmp/wa_bench_latency_{backend}")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        for key in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL", "REDIS_URL", "PROCESSING_IDLE_EXIT_SECONDS"):
            os.environ.pop(key, None)
        env = dict(os.environ)
        quota = {"PROCESSING_ORG_WEBHOOKS_PER_MINUTE": str(args.org_quota), "PROCESSING_ORG_MAX_IN_FLIGHT": str(args.org_quota)}
        env.update(META_APP_SECRET=BENCH_SECRET, TOKEN_ENCRYPTION_KEY=BENCH_TOKEN_KEY, WA_DATA_DIR=str(self.data_dir),
                   PROCESSING_SHARDS=str(args.shards), **(quota if args.org_quota else {}))
        if backend == "postgres":
            drop_db(APP_DB + "_dagster")
            url = fresh_db(APP_DB)
            env["DATABASE_URL"] = url
        else:
            url = None
            env.pop("DATABASE_URL", None)
        self.settings = make_settings(url, self.data_dir)
        upgrade(self.settings)
        prepare_dagster_home(self.settings, env)  # creates <db>_dagster on Postgres
        if compute_logs == "local":
            use_dagster_compute_logs(Path(env["DAGSTER_HOME"]))
        init_dagster_storage(env)
        bind_demo_numbers(self.settings, 3)
        self.env = env
        self.port, self.grpc_port, self.web_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/whatsapp/webhook"
        self.workspace = self.data_dir / "workspace.yaml"
        self.workspace.write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {self.grpc_port}\n      location_name: \"{LOCATION}\"\n"
        )
        self.services = Services(env, self.data_dir / "logs")
        from wa_core.db.engine import create_sync_engine

        self.engine = create_sync_engine(self.settings)
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]  # the bench reads Dagster's run records
        if "DAGSTER_POSTGRES_URL" in env:
            os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
        self.db_prefix = APP_DB if backend == "postgres" else "-"
        self.instance = None
        self.descendants: list[int] = []

    def start(self) -> None:
        import subprocess

        from wa_dev.stack import wait_http as _wait_http

        t0 = time.monotonic()
        self.services.start("code-server", [str(VENV_BIN / "dagster"), "api", "grpc", "-h", "127.0.0.1", "-p", str(self.grpc_port),
                                            "-m", "wa_pipelines.definitions", "-a", "defs", "--location-name", LOCATION])
        self.services.start("receiver", [str(VENV_BIN / "wa-onboarding"), "serve", "--host", "127.0.0.1", "--port", str(self.port)])
        deadline = time.monotonic() + 120
        while subprocess.run([str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.grpc_port)],
                             capture_output=True, env=self.env).returncode != 0:
            self.services.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the code server did not answer")
            time.sleep(1)
        self.services.start("dagster-webserver", [str(VENV_BIN / "dagster-webserver"), "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.web_port)])
        self.services.start("dagster-daemon", [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])
        _wait_http(f"http://127.0.0.1:{self.port}/readyz", self.services, 60)
        _wait_http(f"http://127.0.0.1:{self.web_port}/server_info", self.services, 120)
        from dagster import DagsterInstance

        self.instance = DagsterInstance.get()
        print(f"[{stamp()}] {self.backend}: stack ready after {time.monotonic() - t0:.1f}s", flush=True)

    def stop(self) -> None:
        """SIGTERM every service's process group, SIGKILL what is left, then any descendant
        that left its group (run processes of the code server)."""
        self.descendants = descendants = tree_pids(self.pids())
        self.services.stop()
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.instance is not None:
            self.instance.dispose()
        self.engine.dispose()

    def pids(self, name: str | None = None) -> list[int]:
        return [p.pid for n, p in self.services.procs if name is None or n == name]

    # --- Dagster run records -----------------------------------------------------------
    def runs(self, statuses=None):
        from dagster import RunsFilter

        return self.instance.get_run_records(RunsFilter(job_name=PROC_JOB, statuses=statuses))

    def wait_shards_started(self, shards: int, timeout: float = 180) -> float:
        from dagster import DagsterRunStatus

        t0, deadline = time.monotonic(), time.monotonic() + timeout
        while len({r.dagster_run.tags.get("wa/shard") for r in self.runs([DagsterRunStatus.STARTED])}) < shards:
            self.services.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the processing runs did not start")
            time.sleep(0.5)
        return time.monotonic() - t0

    # --- app database -------------------------------------------------------------------
    def send_one(self) -> str:
        import httpx

        from wa_core.meta.signature import sign
        from wa_dev.simulate import SyntheticStream, synthetic_numbers

        body = SyntheticStream(synthetic_numbers(3)).next_body()
        rid = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, BENCH_SECRET), "X-Request-Id": rid}
        r = httpx.post(self.url, content=body, headers=headers, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"receiver answered {r.status_code}: {r.text[:200]}")
        return rid

    def wait_row(self, rid: str, timeout: float = 180):
        from wa_core.db.schema import whatsapp_webhook_logs as logs

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.services.check()
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(logs.c.status, logs.c.received_at, logs.c.processed_at).where(logs.c.request_id == rid)).first()
            if row is not None and row.processed_at is not None:
                return (_aware(row.processed_at) - _aware(row.received_at)).total_seconds(), row.status
            time.sleep(0.02)
        raise RuntimeError(f"webhook {rid} not processed within {timeout:.0f}s")

    def latencies_since(self, since: datetime) -> list[tuple[float | None, str]]:
        from wa_core.db.schema import whatsapp_webhook_logs as logs

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(logs.c.received_at, logs.c.processed_at, logs.c.status).where(logs.c.received_at >= since)).all()
        return [((_aware(r.processed_at) - _aware(r.received_at)).total_seconds() if r.processed_at else None, r.status) for r in rows]


def idle_window(stack: Stack, seconds: float) -> dict:
    """CPU (cores) per service and in all, RSS/PSS over the stack's process tree, loadavg."""
    roots = {name: stack.pids(name) for name in SERVICES}
    cpu0 = {name: cpu_snapshot(pids) for name, pids in roots.items()}
    pg0 = pg_backend_cpu(stack.db_prefix)
    t0 = time.monotonic()
    mem: list[dict] = []
    while time.monotonic() - t0 < seconds:
        stack.services.check()
        mem.append(memory_snapshot(stack.pids()))
        time.sleep(min(5.0, max(0.0, seconds - (time.monotonic() - t0))))
    elapsed = time.monotonic() - t0
    cpu1 = {name: cpu_snapshot(pids) for name, pids in roots.items()}
    own_pg = pg_cpu_between(pg0, pg_backend_cpu(stack.db_prefix)) / elapsed
    per_service = {name: round((cpu1[name]["server"] - cpu0[name]["server"]) / elapsed, 4) for name in SERVICES}
    any0, any1 = next(iter(cpu0.values())), next(iter(cpu1.values()))
    stack_cores = sum(per_service.values())
    postgres = (any1["postgres"] - any0["postgres"]) / elapsed
    machine = (any1["machine"] - any0["machine"]) / elapsed
    rss = [m["rss_mb"] for m in mem]
    return {
        "seconds": round(elapsed, 1),
        "stack_cores": round(stack_cores, 4),
        "cores_by_service": per_service,
        "postgres_cores": round(postgres, 4),  # every Postgres process on the machine (other users too)
        "postgres_stack_backends_cores": round(own_pg, 4),  # the stack's own connections (lower bound)
        "other_cores": round(max(0.0, machine - stack_cores - postgres), 3),
        "rss_mb_mean": round(sum(rss) / len(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "pss_mb_max": round(max(m["pss_mb"] for m in mem), 1),
        "processes_max": max(m["processes"] for m in mem),
        "loadavg_end": os.getloadavg(),
    }


def bench_backend(backend: str, args, compute_logs: str = "file") -> dict:
    from dagster import DagsterRunStatus

    result: dict = {"backend": backend, "compute_logs": compute_logs, "problems": []}
    stack = Stack(backend, args, compute_logs)
    try:
        stack.start()
        result["runs_started_after_s"] = round(stack.wait_shards_started(args.shards), 1)
        rid = stack.send_one()
        result["cold_latency_s"] = stack.wait_row(rid)[0]
        print(f"[{stamp()}] runs up after {result['runs_started_after_s']}s; first webhook {result['cold_latency_s']:.3f}s", flush=True)

        # (a) steady stream over 3 organizations
        from wa_dev.simulate import SendReport, SyntheticStream, send_stream, synthetic_numbers
        from wa_dev.stack import wait_processed

        since = datetime.now(timezone.utc)
        report = SendReport()
        cpu0, t0 = cpu_snapshot(stack.pids()), time.monotonic()
        asyncio.run(send_stream(stack.url, BENCH_SECRET, SyntheticStream(synthetic_numbers(3)), args.rate, args.duration, report, 32))
        drained = wait_processed(stack.settings, 300, stack.services)
        cpu1 = cpu_snapshot(stack.pids())
        secs = time.monotonic() - t0
        rows = stack.latencies_since(since)
        lat = [l for l, _ in rows if l is not None]
        steady = {"rate": args.rate, "duration": args.duration, "sent": report.sent, "accepted": report.delivered,
                  "gave_up": report.gave_up, "rows": len(rows), "drained": drained,
                  "statuses": {s: sum(1 for _, st in rows if st == s) for s in {st for _, st in rows}},
                  "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "p99_s": percentile(lat, 99), "max_s": max(lat, default=None),
                  "receiver_p99_ms": percentile(report.latencies_ms, 99),
                  "stack_cores": round((cpu1["server"] - cpu0["server"]) / secs, 3),
                  "postgres_cores": round((cpu1["postgres"] - cpu0["postgres"]) / secs, 3), "loadavg_end": os.getloadavg()}
        result["steady"] = steady
        print(f"[{stamp()}] steady {args.rate:g}/s for {args.duration:g}s: p50 {steady['p50_s']:.3f}s p95 {steady['p95_s']:.3f}s "
              f"max {steady['max_s']:.3f}s ({len(rows)} rows); stack {steady['stack_cores']} cores, Postgres {steady['postgres_cores']}", flush=True)
        if not drained or report.gave_up or steady["statuses"].get("processed") != len(rows) or len(rows) != report.delivered:
            result["problems"].append(f"steady stream: {steady}")

        # (b) idle windows, each followed by one webhook
        windows, samples = [], []
        for i in range(args.samples):
            window = idle_window(stack, args.idle)
            rid = stack.send_one()
            latency, status = stack.wait_row(rid)
            window["then_one_webhook_s"] = latency
            windows.append(window)
            samples.append(latency)
            print(f"[{stamp()}] idle window {i + 1}: stack {window['stack_cores']} cores {window['cores_by_service']}, "
                  f"RSS max {window['rss_mb_max']} MB (PSS {window['pss_mb_max']}), {window['processes_max']} processes, "
                  f"its Postgres backends {window['postgres_stack_backends_cores']}; then one webhook {latency:.3f}s ({status})", flush=True)
        result["idle"] = {"idle_s": args.idle, "windows": windows, "latency_p50_s": percentile(samples, 50), "latency_p95_s": percentile(samples, 95),
                          "latency_max_s": max(samples, default=None),
                          "stack_cores_mean": round(sum(w["stack_cores"] for w in windows) / len(windows), 4) if windows else None,
                          "stack_cores_max": max((w["stack_cores"] for w in windows), default=None),
                          "rss_mb_max": max((w["rss_mb_max"] for w in windows), default=None)}
        records = stack.runs()
        result["processing_runs"] = {s.value: sum(1 for r in records if r.dagster_run.status == s) for s in {r.dagster_run.status for r in records}}
        failed = sum(1 for r in records if r.dagster_run.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED))
        if failed:
            result["problems"].append(f"{failed} processing run(s) failed or were cancelled; see {stack.data_dir / 'logs'}")
    except Exception as exc:  # noqa: BLE001 - report, stop the stack, go on with the next backend
        result["problems"].append(f"{type(exc).__name__}: {exc}")
        print(f"[{stamp()}] ERROR: {exc}", file=sys.stderr, flush=True)
    finally:
        stack.stop()
        left = _still_running(stack.descendants)
        if left:
            result["problems"].append(f"processes left running: {left}")
        if backend == "postgres" and not args.keep:
            drop_db(APP_DB)
            drop_db(APP_DB + "_dagster")
    return result


def _still_running(pids: list[int], wait: float = 5.0) -> list[int]:
    """Which of ``pids`` still run (not zombies) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def pg_backend_cpu(dbname_prefix: str) -> dict[int, float]:
    """CPU seconds per live Postgres backend connected to a database named ``dbname_prefix*``
    (from the backends' process titles). Compare two snapshots with :func:`pg_cpu_between`."""
    from _common import _proc_stat

    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        # "postgres: [cluster:] user database host(port) state"
        if title[:1] == ["postgres:"] and any(t.startswith(dbname_prefix) for t in title[1:4]):
            st = _proc_stat(int(entry.name))
            if st:
                out[int(entry.name)] = st[2]
    return out


def pg_cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the stack's backends used between two snapshots: backends alive at the end
    (new ones counted whole). Backends that ended in between are missed: a lower bound."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the finally blocks: the stack stops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgres")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--samples", type=int, default=5, help="idle windows, each followed by one webhook")
    ap.add_argument("--idle", type=float, default=300.0, help="seconds of each idle window (the bar: 300)")
    ap.add_argument("--shards", type=int, default=1, help="PROCESSING_SHARDS of the stack")
    ap.add_argument("--org-quota", type=int, default=1_000_000,
                    help="PROCESSING_ORG_WEBHOOKS_PER_MINUTE and _MAX_IN_FLIGHT for the stack (0 = the defaults)")
    ap.add_argument("--keep", action="store_true", help="keep the Postgres databases and /tmp folders")
    ap.add_argument("--compute-logs", default="file",
                    help="comma-separated stack variants run one after the other per backend: file (the project's "
                         "FileComputeLogManager, shipped) and/or local (Dagster's default, with tail mirrors: the reference)")
    args = ap.parse_args()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    out = {"machine": machine_info(), "loadavg_start": os.getloadavg(), "args": vars(args), "backends": []}
    for backend in args.backends.split(","):
        for variant in args.compute_logs.split(","):
            out["backends"].append(bench_backend(backend, args, variant))
    out["loadavg_end"] = os.getloadavg()
    path = save_results("latency", out)
    print(f"\nresults: {path}")
    problems = [p for b in out["backends"] for p in b["problems"]]
    for p in problems:
        print(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
