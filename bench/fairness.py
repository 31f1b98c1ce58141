"""Fair scheduling v2: what one claim costs as the backlog grows, and the flood scenario.

Part ``claim`` (cost of one ``claim_batch`` call, Postgres; SQLite with ``--sqlite-backlogs``).
Three backlog shapes, real ``SyntheticStream`` bodies landed as the receiver lands them
(``waba_id`` = ``routing_waba_id(body)``), organizations bound with ``up``'s
``bind_demo_numbers``, ``VACUUM ANALYZE`` after each step:

- ``flood``: one organization with N claimable rows (N = 1k, 10k, 100k), 20 others with 5
  rows each (the newest rows); batch 200.
- ``spread``: 100 organizations with N / 100 rows each (N = 100k); batch 1000 (what a
  claim reads when many lanes are busy: the per-lane depth of the candidate query).

Claims compared, interleaved sample by sample (the order rotates), each sample's leased rows
put back untimed so every sample sees the same backlog:

- ``fair``: the shipped ``claim_batch`` with its defaults (no caps): the whole batch, dealt
  round-robin over the lanes.
- ``fair_capped``: the shipped claim with the old limits set as caps (10 in flight, 100/min).
- ``old_quota``: the claim of ``8c43a00`` (before this change: always-binding quotas 10/100),
  run from ``git archive 8c43a00`` in a worker process of its own (timed inside the worker).
- ``fifo``: the claim before the fair claim (oldest rows, ``SKIP LOCKED``; ``_common``).

Also ``count_claimable`` (the sensor's count: now grouped by lane, pauses excluded) against the
old plain count, and ``claimable_by_shard(conn, 2)``.

Part ``flood`` (the issue's scenario, Postgres, one ``run_processing`` loop as a run does it,
default batch and poll; landing in a thread with its own engine, one insert and commit per
webhook, as the receiver): organization 1 lands ``--flood`` (10,000) webhooks at once while
organizations 2-6 send ``--others-rate`` (20) webhooks/s together for ``--span`` (30) s.
Scenarios in one run: ``baseline`` (the others alone), ``fair`` (the default: no caps),
``alone`` (the flood alone: the full-speed reference), ``fifo`` (the FIFO claim: the
reference without fairness), ``capped`` (the old limits as caps; stopped 30 s after the
others stop: the flood would take 100 minutes). Reported: landing→processed per organization
(p50/p95/max), the flood's processing rate while the others send and after they stop, against
``alone``; loadavg before and after each scenario.

Databases: ``wa_bench_fairness`` (Postgres), files under /tmp/wa_bench_fairness_sqlite, the
archive under /tmp/wa_bench_fairness_8c43a00; all removed at the end.

Usage (about 15 minutes with the defaults):
    .venv/bin/python bench/fairness.py
    .venv/bin/python bench/fairness.py --parts claim --backlogs 1000,100000 --samples 10   # quick
    .venv/bin/python bench/fairness.py --parts flood --flood 3000 --span 20                 # ~3 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import (PROJECT_ROOT, cpu_snapshot, drop_db, fifo_claim_batch, fresh_db, landing_row, machine_info, make_settings,
                     save_results, shipped_engine)

import sqlalchemy as sa

from wa_core.reporting.stats import percentile

DB_NAME = "wa_bench_fairness"
SQLITE_DIR = Path("/tmp/wa_bench_fairness_sqlite")
OLD_REV = "8c43a00"
OLD_DIR = Path(f"/tmp/wa_bench_fairness_{OLD_REV}")
LEASE_SECONDS = 300.0
OLD_CAPS = {"org_max_in_flight": 10, "org_per_minute": 100}
NO_CAPS = {"org_max_in_flight": 0, "org_per_minute": 0}

# The claim of 8c43a00 in a process of its own (its packages have today's names): reads JSON
# commands on stdin, answers one JSON line each; times only the claim (or the count).
OLD_WORKER = r"""
import importlib.util, json, sys, time
archive, url = sys.argv[1], sys.argv[2]
sys.path.insert(0, archive)
spec = importlib.util.spec_from_file_location("old_claim", archive + "/wa_pipelines/processing/claim.py")
old = sys.modules["old_claim"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
import sqlalchemy as sa
from wa_webhook.db.engine import create_processing_engine
from wa_webhook.db.schema import whatsapp_webhook_logs as logs
from wa_webhook.settings import Settings
engine = create_processing_engine(Settings(_env_file=None, database_url=url), pool_size=2, max_overflow=2)
for line in sys.stdin:
    cmd = json.loads(line)
    t0 = time.perf_counter()
    if cmd["op"] == "claim":
        claim = old.claim_batch(engine, cmd["limit"], 300.0, org_max_in_flight=10, org_per_minute=100)
        out = {"ms": 1000 * (time.perf_counter() - t0), "rows": len(claim), "held_back": claim.held_back}
        ids = [r.id for r in claim]
        if ids:
            with engine.begin() as conn:
                conn.execute(sa.update(logs).where(logs.c.id.in_(ids)).values(locked_until=None, claimed_at=None, attempts=0))
    elif cmd["op"] == "count":
        with engine.connect() as conn:
            n = old.count_claimable(conn)
        out = {"ms": 1000 * (time.perf_counter() - t0), "rows": n, "held_back": 0}
    else:
        break
    print(json.dumps(out), flush=True)
"""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- set-up -----------------------------------------------------------------------------
def prepare(backend: str, orgs: int):
    """Fresh migrated database with ``orgs`` synthetic organizations bound."""
    from wa_core.db.migrate import upgrade
    from wa_dev.feed import bind_demo_numbers

    if backend == "postgres":
        settings = make_settings(fresh_db(DB_NAME), Path("/tmp/wa_bench_fairness"))
    else:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
        SQLITE_DIR.mkdir(parents=True)
        settings = make_settings(None, SQLITE_DIR)
    upgrade(settings)
    bind_demo_numbers(settings, orgs)
    return settings


def cleanup() -> None:
    drop_db(DB_NAME)
    shutil.rmtree(SQLITE_DIR, ignore_errors=True)


def land(conn, bodies: list[bytes], **overrides) -> None:
    from wa_core.db.schema import utcnow, whatsapp_webhook_logs

    now = utcnow()
    values = [dict(landing_row(b, now), **overrides) for b in bodies]
    for i in range(0, len(values), 2000):
        conn.execute(sa.insert(whatsapp_webhook_logs), values[i : i + 2000])


def analyze(engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE whatsapp_webhook_logs"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))


def _release(engine, ids: list[int]) -> None:
    """Put leased rows back as they were landed (untimed)."""
    from wa_core.db.schema import whatsapp_webhook_logs as logs

    if ids:
        with engine.begin() as conn:
            conn.execute(sa.update(logs).where(logs.c.id.in_(ids)).values(locked_until=None, claimed_at=None, attempts=0))


class OldClaim:
    """The claim of :data:`OLD_REV` in a worker process (see :data:`OLD_WORKER`)."""

    def __init__(self, url: str):
        if not (OLD_DIR / "wa_pipelines/processing/claim.py").exists():
            OLD_DIR.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", OLD_REV, "wa_webhook", "wa_pipelines/processing"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(OLD_DIR)], input=archive, check=True)
        self.proc = subprocess.Popen([sys.executable, "-c", OLD_WORKER, str(OLD_DIR), url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd="/tmp")

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"old claim worker died (exit {self.proc.poll()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- part 1: cost of one claim -------------------------------------------------------------
def _summary_ms(samples: list[dict]) -> dict:
    times = [s["ms"] for s in samples]
    return {"samples": len(times), "ms_median": statistics.median(times), "ms_p95": percentile(times, 95), "ms_min": min(times),
            "rows": statistics.median(s["rows"] for s in samples), "held_back": statistics.median(s["held_back"] for s in samples)}


def _variants(engine, limit: int, old: OldClaim | None) -> dict:
    from wa_core.processing.claim import claim_batch, claimable_by_shard, count_claimable

    def timed(fn, **kw):
        def run() -> dict:
            t0 = time.perf_counter()
            claim = fn(engine, limit, LEASE_SECONDS, **kw)
            ms = 1000 * (time.perf_counter() - t0)
            _release(engine, [r.id for r in claim])
            return {"ms": ms, "rows": len(claim), "held_back": getattr(claim, "held_back", 0)}
        return run

    def counted(fn):
        def run() -> dict:
            t0 = time.perf_counter()
            with engine.connect() as conn:
                n = fn(conn)
            return {"ms": 1000 * (time.perf_counter() - t0), "rows": n if isinstance(n, int) else sum(n), "held_back": 0}
        return run

    out = {"fair": timed(claim_batch, **NO_CAPS), "fair_capped": timed(claim_batch, **OLD_CAPS), "fifo": timed(fifo_claim_batch),
           "count_claimable": counted(count_claimable), "claimable_by_shard_2": counted(lambda c: claimable_by_shard(c, 2))}
    if old:
        out["old_quota"] = lambda: old.ask(op="claim", limit=limit)
        out["old_count"] = lambda: old.ask(op="count")
    return out


def claim_cost(backend: str, shape: str, backlogs: list[int], samples: int, with_old: bool) -> list[dict]:
    from wa_core.db.schema import whatsapp_webhook_logs as logs
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    lanes = 21 if shape == "flood" else 100
    limit = 200 if shape == "flood" else 1000
    settings = prepare(backend, lanes)
    engine = shipped_engine(settings)
    numbers = synthetic_numbers(lanes)
    streams = [SyntheticStream([n], seed=100 + i) for i, n in enumerate(numbers)]
    old = OldClaim(settings.database_url) if with_old and backend == "postgres" else None
    results, landed = [], 0
    try:
        for backlog in sorted(backlogs):
            t_land = time.perf_counter()
            with engine.begin() as conn:
                if shape == "flood":
                    conn.execute(sa.delete(logs).where(logs.c.request_id == "bench-other"))  # re-landed below, newest
                    land(conn, [streams[0].next_body() for _ in range(backlog - landed)])
                    land(conn, [s.next_body() for s in streams[1:] for _ in range(5)], request_id="bench-other")
                else:
                    per_lane = (backlog - landed) // lanes
                    land(conn, [s.next_body() for _ in range(per_lane) for s in streams])
                landed = backlog
            analyze(engine)
            variants = _variants(engine, limit, old)
            names = list(variants)
            got: dict[str, list] = {n: [] for n in names}
            load0, cpu0, t0 = loadavg(), cpu_snapshot([os.getpid()]), time.perf_counter()
            for i in range(samples + 3):  # 3 warm-up rounds
                order = names[i % len(names):] + names[: i % len(names)]
                for name in order:
                    sample = variants[name]()
                    if i >= 3:
                        got[name].append(sample)
            cpu1, wall = cpu_snapshot([os.getpid()]), time.perf_counter() - t0
            row = {"backend": backend, "shape": shape, "backlog": backlog, "lanes": lanes, "limit": limit,
                   "land_seconds": time.perf_counter() - t_land - wall, "loadavg_before": load0, "loadavg_after": loadavg(),
                   "cpu_cores": {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0},
                   "claims": {n: _summary_ms(v) for n, v in got.items()}}
            results.append(row)
            c = row["claims"]
            print(f"{backend:8} {shape:6} backlog {backlog:>7} (batch {limit}): "
                  + " | ".join(f"{n} {v['ms_median']:.1f} ms (p95 {v['ms_p95']:.1f}) {v['rows']:.0f} rows" for n, v in c.items())
                  + f"  [loadavg {row['loadavg_before']} -> {row['loadavg_after']}]", flush=True)
    finally:
        if old:
            old.close()
        engine.dispose()
    return results


# --- part 2: the flood scenario -------------------------------------------------------------
def _lander(settings, bodies: list[bytes], start: float, span: float, errors: list) -> None:
    """Land ``bodies`` evenly over ``span`` seconds from ``start`` (monotonic), one insert and
    commit each, with an engine of its own (the receiver's role)."""
    from wa_core.db.engine import create_sync_engine

    engine = create_sync_engine(settings, pool_size=1, max_overflow=0) if settings.is_postgres else create_sync_engine(settings)
    try:
        for i, body in enumerate(bodies):
            delay = start + (i + 0.5) * span / len(bodies) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with engine.begin() as conn:
                land(conn, [body])
    except Exception as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(repr(exc))
    finally:
        engine.dispose()


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}


def scenario(name: str, claim: str, flood: int, others: int, rate: float, span: float, caps: dict,
             stop_after: float | None = None) -> dict:
    """One flood scenario on a fresh Postgres database (see the module docstring)."""
    import wa_core.processing.runner as runner
    from wa_core.db.schema import as_utc, whatsapp_webhook_logs as logs
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    settings = prepare("postgres", others + 1).model_copy(
        update={"processing_org_max_in_flight": caps["org_max_in_flight"], "processing_org_webhooks_per_minute": caps["org_per_minute"]})
    numbers = synthetic_numbers(others + 1)
    org_of = {n.waba_id: n.org_external_id for n in numbers}
    flood_org = numbers[0].org_external_id
    streams = [SyntheticStream([n], seed=200 + i) for i, n in enumerate(numbers[1:])]
    other_bodies = [streams[i % others].next_body() for i in range(int(rate * span))] if others else []
    engine = shipped_engine(settings)
    original = runner.claim_batch
    if claim == "fifo":
        runner.claim_batch = fifo_claim_batch
    errors: list[str] = []
    load0, cpu0 = loadavg(), cpu_snapshot([os.getpid()])
    try:
        if flood:
            with engine.begin() as conn:
                land(conn, [SyntheticStream([numbers[0]], seed=199).next_body() for _ in range(flood)])
        start = time.monotonic()
        lander = threading.Thread(target=_lander, args=(settings, other_bodies, start, span, errors), daemon=True)
        if other_bodies:
            lander.start()
        while True:
            left_s = None if stop_after is None else max(0.5, stop_after - (time.monotonic() - start))
            runner.run_processing(engine, settings, idle_exit_seconds=2.0, max_seconds=left_s or 3600)
            with engine.connect() as conn:
                left = conn.execute(sa.select(sa.func.count()).select_from(logs).where(logs.c.status != "processed")).scalar_one()
            if (not lander.is_alive() and not left) or (stop_after is not None and time.monotonic() - start >= stop_after):
                break
        elapsed = time.monotonic() - start
        if other_bodies:
            lander.join(timeout=60)
    finally:
        runner.claim_batch = original
    cpu1 = cpu_snapshot([os.getpid()])
    with engine.connect() as conn:
        found = conn.execute(sa.select(logs.c.waba_id, logs.c.received_at, logs.c.processed_at, logs.c.status)).all()
    engine.dispose()
    t_land = min(as_utc(r.received_at) for r in found)
    lat: dict[str, list[float]] = {}
    flood_done: list[float] = []
    for r in found:
        org = org_of.get(r.waba_id, r.waba_id)
        lat.setdefault(org, [])
        if r.status == "processed":
            lat[org].append((as_utc(r.processed_at) - as_utc(r.received_at)).total_seconds())
            if org == flood_org:
                flood_done.append((as_utc(r.processed_at) - t_land).total_seconds())
    others_lat = [x for org, v in lat.items() if org != flood_org for x in v]
    out = {"scenario": name, "claim": claim, "caps": caps, "flood": flood, "others": others, "others_rate": rate, "span": span,
           "seconds": elapsed, "lander_errors": errors, "loadavg_before": load0, "loadavg_after": loadavg(),
           "cpu_cores": {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0},
           "per_org": {org: _summary(v) for org, v in sorted(lat.items())}, "others_all": _summary(others_lat),
           "others_unprocessed": sum(1 for r in found if org_of.get(r.waba_id) != flood_org and r.status != "processed")}
    if flood:
        during = [t for t in flood_done if t <= span] if others else []
        after = sorted(t for t in flood_done if t > span) if others else sorted(flood_done)
        out["flood_rate"] = {
            "processed": len(flood_done), "of": flood, "done_after_s": max(flood_done) if flood_done else None,
            # while the others send: up to the end of their span, or to the flood's last row if it ends first
            "per_s_while_others_send": (len(during) / (max(during) if len(flood_done) == flood and max(flood_done) <= span else span))
            if others and len(during) > 1 else None,
            # after the others stop: from the end of their span (or from landing) to the last flood row
            "per_s_after_others_stop": (len(after) / (after[-1] - (span if others else 0))) if len(after) > 1 else None,
        }
    return out


def _print_scenario(s: dict) -> None:
    o = s["others_all"]
    line = f"flood/{s['scenario']:8} ({s['claim']}, caps {s['caps']['org_max_in_flight']}/{s['caps']['org_per_minute']}): {s['seconds']:.0f} s"
    if o["n"]:
        line += f"; others n={o['n']} p50 {o['p50']:.2f} s p95 {o['p95']:.2f} s max {o['max']:.2f} s (unprocessed {s['others_unprocessed']})"
    if "flood_rate" in s:
        f = s["flood_rate"]
        during = f"{f['per_s_while_others_send']:.0f}/s while others send, " if f["per_s_while_others_send"] is not None else ""
        after = f"{f['per_s_after_others_stop']:.0f}/s" if f["per_s_after_others_stop"] else "-"
        line += f"; flood {f['processed']}/{f['of']} processed, {during}{after} after"
    print(line + f"  [loadavg {s['loadavg_before']} -> {s['loadavg_after']}]" + (f" LANDER ERRORS {s['lander_errors']}" if s["lander_errors"] else ""),
          flush=True)


# --- main -------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="claim,flood")
    ap.add_argument("--backlogs", default="1000,10000,100000", help="claim part, flood shape (Postgres)")
    ap.add_argument("--spread-backlogs", default="100000", help="claim part, spread shape (Postgres; '' = skip)")
    ap.add_argument("--sqlite-backlogs", default="1000,10000", help="claim part, flood shape on SQLite ('' = skip)")
    ap.add_argument("--samples", type=int, default=20, help="claim part: timed claims per variant and backlog")
    ap.add_argument("--no-old", action="store_true", help=f"claim part: skip the claim of {OLD_REV}")
    ap.add_argument("--flood", type=int, default=10_000)
    ap.add_argument("--others", type=int, default=5)
    ap.add_argument("--others-rate", type=float, default=20.0, help="webhooks/s of the other organizations together")
    ap.add_argument("--span", type=float, default=30.0, help="seconds the others send")
    ap.add_argument("--scenarios", default="baseline,fair,alone,fifo,capped")
    args = ap.parse_args()
    parts = set(args.parts.split(","))

    out = {"machine": {**machine_info(), "loadavg_start": loadavg()}, "args": vars(args), "claim_cost": [], "flood": []}
    ok = True
    try:
        if "claim" in parts:
            plan = [("postgres", "flood", args.backlogs), ("postgres", "spread", args.spread_backlogs), ("sqlite", "flood", args.sqlite_backlogs)]
            for backend, shape, backlogs in plan:
                if backlogs:
                    out["claim_cost"] += claim_cost(backend, shape, [int(b) for b in backlogs.split(",")], args.samples, not args.no_old)
                    cleanup()
        if "flood" in parts:
            plan = {
                "baseline": ("fair", 0, args.others, NO_CAPS, None),
                "fair": ("fair", args.flood, args.others, NO_CAPS, None),
                "alone": ("fair", args.flood, 0, NO_CAPS, None),
                "fifo": ("fifo", args.flood, args.others, NO_CAPS, None),
                "capped": ("fair", args.flood, args.others, OLD_CAPS, args.span + 30),
            }
            for name in args.scenarios.split(","):
                claim, flood, others, caps, stop = plan[name]
                r = scenario(name, claim, flood, others, args.others_rate, args.span, caps, stop)
                out["flood"].append(r)
                _print_scenario(r)
                ok &= not r["lander_errors"]
                cleanup()
    finally:
        cleanup()
        shutil.rmtree(OLD_DIR, ignore_errors=True)
    out["machine"]["loadavg_end"] = loadavg()
    path = save_results("fairness", out)
    print(f"\nresults: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
