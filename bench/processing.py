"""Processing throughput on pre-landed webhooks: the set-based engine against a reference writer
and against the loop before it, interleaved in one run (Postgres), plus the effect of backlog size.

Default mode (``compare``), for each repetition and in turn for each variant: a fresh database
(``wa_bench_processing``), migrated, demo numbers bound (``wa_dev.feed.bind_demo_numbers``), then
N ``SyntheticStream`` bodies (seeded per repetition, the same for every variant) inserted as
the receiver lands them, ``VACUUM ANALYZE``d, then drained by a fresh child process that
times its own drain (imports and connection set-up excluded):

- ``engine``: ``wa_core.processing.runner.run_processing(engine, settings, batch_size=B,
  idle_exit_seconds=0)``, the loop a Dagster run executes (its garbage-collector tuning
  included), until nothing is left (the fair claim, the set-based ``apply_batch``), with the
  engine a Dagster run uses (``create_processing_engine``, pool 2+2);
- ``reference``: ``bench/reference_writer.py``, a straightforward set-based writer doing the
  same inserts into the same tables (FIFO claim, one ``unnest`` insert per table, no
  outcome bookkeeping);
- ``old``: the processing loop of commit ``8c43a00`` (the commit before the restructure,
  extracted with ``git archive`` into /tmp), its own ``run_processing(batch_size=B)``.

The engine runs with the shipped defaults (no per-organization caps); ``--caps`` adds never-binding
caps (the old loop always has its quota, set so high it never binds).
Items = messages + statuses (``items_received``). Each case records ``os.getloadavg()`` and
the CPU used by the child, Postgres and the rest of the machine. Every case must end with
every row ``processed``; the engine's and the reference's tables are compared (message,
status, contact and reaction counts).

``--backlog``: the engine only, in this process: throughput of ``--batches-per-case``
batches of B with a backlog of 1k rows (1k landed before each batch) against a backlog of
100k rows (landed once), interleaved.

``--legacy``: the earlier matrix (``run_processing`` at batch 100 and 1000, Postgres and SQLite,
``--claims fair,fifo``) and ``--diagnose``; see docs/benchmarks.md sections 2 and 5.

Usage:
    .venv/bin/python bench/processing.py                       # compare, 10k rows, 3 repetitions
    .venv/bin/python bench/processing.py --rows 2000 --repeat 1 --variants engine,reference  # quick
    .venv/bin/python bench/processing.py --backlog              # 1k vs 100k backlog
    .venv/bin/python bench/processing.py --legacy --rows 5000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from datetime import timedelta
from pathlib import Path

from _common import (cpu_snapshot, drop_db, fifo_claim_batch, fresh_db, landing_row, machine_info,
                     make_settings, save_results, shipped_engine)

import sqlalchemy as sa

DB_NAME = "wa_bench_processing"
VARIANTS = ("as_shipped", "durable_commit", "no_pre_ping")
SQLITE_DIR = Path("/tmp/wa_bench_processing_sqlite")


def prepare(backend: str, rows: int, orgs: int, seed: int):
    from wa_core.db.schema import utcnow, whatsapp_webhook_logs
    from wa_core.db.migrate import upgrade
    from wa_dev.simulate import SyntheticStream, synthetic_numbers
    from wa_dev.feed import bind_demo_numbers

    if backend == "postgres":
        settings = make_settings(fresh_db(DB_NAME), Path("/tmp/wa_bench_processing"))
    else:
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)
        SQLITE_DIR.mkdir(parents=True)
        settings = make_settings(None, SQLITE_DIR)
    upgrade(settings)
    bind_demo_numbers(settings, orgs)
    stream = SyntheticStream(synthetic_numbers(orgs), seed=seed)
    now = utcnow()
    # arrival times 1 ms apart, as a stream lands them (a contact seen again is seen later)
    values = [landing_row(stream.next_body(), now - timedelta(milliseconds=rows - i)) for i in range(rows)]
    engine = shipped_engine(settings)
    with engine.begin() as conn:
        for i in range(0, rows, 2000):
            conn.execute(sa.insert(whatsapp_webhook_logs), values[i : i + 2000])
    if backend == "postgres":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    sizes = [len(v["body"]) for v in values]
    return settings, engine, sizes


def variant_engine(settings, variant: str):
    """Diagnostic engines (bench only): what one change to the connection would buy."""
    from wa_core.db.engine import create_sync_engine

    if variant == "durable_commit":  # plain create_sync_engine: synchronous_commit on
        return create_sync_engine(settings, pool_size=2, max_overflow=2)
    if variant == "no_pre_ping":
        return shipped_engine(settings, pool_pre_ping=False)
    raise ValueError(variant)


def quota_free(settings, batch: int):
    """``settings`` with per-organization quotas that never bind in this benchmark (see the
    module docstring): 10**9 claims per minute, ``batch`` rows in flight per organization."""
    return settings.model_copy(update={"processing_org_webhooks_per_minute": 10**9, "processing_org_max_in_flight": batch})


def one_case(backend: str, batch: int, rows: int, orgs: int, seed: int, variant: str = "as_shipped", claim: str = "fair") -> dict:
    import wa_core.processing.runner as runner

    settings, engine, sizes = prepare(backend, rows, orgs, seed)
    settings = quota_free(settings, batch)
    if variant != "as_shipped":
        engine.dispose()
        engine = variant_engine(settings, variant)
    claim_time = [0.0]
    claim_calls = [0]
    statements = [0]
    original_claim = runner.claim_batch
    measured_claim = original_claim if claim == "fair" else fifo_claim_batch

    def timed_claim(*a, **kw):
        t0 = time.perf_counter()
        try:
            return measured_claim(*a, **kw)
        finally:
            claim_time[0] += time.perf_counter() - t0
            claim_calls[0] += 1

    def count_stmt(*_a, **_kw):
        statements[0] += 1

    runner.claim_batch = timed_claim  # this process only: time the claims
    sa.event.listen(engine, "before_cursor_execute", count_stmt)
    try:
        cpu0 = cpu_snapshot([os.getpid()])
        t0 = time.perf_counter()
        stats = runner.run_processing(engine, settings, batch_size=batch, idle_exit_seconds=0)
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_snapshot([os.getpid()])
    finally:
        runner.claim_batch = original_claim
        sa.event.remove(engine, "before_cursor_execute", count_stmt)
    with engine.connect() as conn:
        by_status = dict(conn.execute(sa.text("SELECT status, count(*) FROM whatsapp_webhook_logs GROUP BY status")).all())
        messages = conn.execute(sa.text("SELECT count(*) FROM whatsapp_messages")).scalar_one()
        statuses = conn.execute(sa.text("SELECT count(*) FROM whatsapp_message_statuses")).scalar_one()
    engine.dispose()
    return {
        "backend": backend, "variant": variant, "claim": claim, "batch_size": batch,
        "org_quotas": {"per_minute": settings.processing_org_webhooks_per_minute, "max_in_flight": settings.processing_org_max_in_flight}, "rows": rows, "seconds": elapsed,
        "webhooks": stats.webhooks, "batches": stats.batches,
        "items_received": stats.items_received, "items_processed": stats.items_processed,
        "items_ignored": stats.items_ignored, "items_failed": stats.items_failed,
        "webhooks_per_s": stats.webhooks / elapsed, "items_per_s": stats.items_received / elapsed,
        "claim_share": claim_time[0] / elapsed, "claim_calls": claim_calls[0],
        "claim_ms_mean": 1000 * claim_time[0] / max(1, claim_calls[0]), "statements_per_webhook": statements[0] / max(1, stats.webhooks),
        "final_status": by_status, "messages": messages, "statuses": statuses,
        "body_bytes_median": statistics.median(sizes),
        "ok": stats.webhooks == rows and by_status == {"processed": rows},
        "cpu_cores": {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0},
    }


def _cores(r: dict) -> str:
    c = r["cpu_cores"]
    other = max(0.0, c["machine"] - c["server"] - c["postgres"])
    return f"{c['server']:.2f}/{c['postgres']:.2f}/{other:.2f}"


def legacy(args) -> int:
    results = []
    print(f"{'backend':8} {'claim':5} {'batch':>5} {'rep':>3} {'rows':>6} {'secs':>6} {'webhooks/s':>10} {'items/s':>8} {'claim%':>6} {'stmts/wh':>8}  final")
    try:
        for rep in range(args.repeat):
            for backend in args.backends.split(","):
                for batch, claim in [(int(b), c) for b in args.batches.split(",") for c in args.claims.split(",")]:
                    r = one_case(backend, batch, args.rows, args.orgs, seed=rep, claim=claim)
                    r["rep"] = rep
                    results.append(r)
                    print(f"{backend:8} {claim:5} {batch:>5} {rep:>3} {r['rows']:>6} {r['seconds']:>6.1f} {r['webhooks_per_s']:>10.0f} "
                          f"{r['items_per_s']:>8.0f} {100 * r['claim_share']:>5.1f}% {r['statements_per_webhook']:>8.1f}  {r['final_status']}  "
                          f"cpu cores bench/pg/other {_cores(r)}",
                          flush=True)
    finally:
        drop_db(DB_NAME)
        shutil.rmtree(SQLITE_DIR, ignore_errors=True)

    summary = []
    print("\nmedian over repetitions:")
    for key in sorted({(r["backend"], r["claim"], r["batch_size"]) for r in results}):
        runs = [r for r in results if (r["backend"], r["claim"], r["batch_size"]) == key]
        s = {"backend": key[0], "claim": key[1], "batch_size": key[2], "runs": len(runs),
             "webhooks_per_s": statistics.median(r["webhooks_per_s"] for r in runs),
             "webhooks_per_s_range": [min(r["webhooks_per_s"] for r in runs), max(r["webhooks_per_s"] for r in runs)],
             "items_per_s": statistics.median(r["items_per_s"] for r in runs),
             "claim_share": statistics.median(r["claim_share"] for r in runs),
             "statements_per_webhook": statistics.median(r["statements_per_webhook"] for r in runs)}
        summary.append(s)
        print(f"{key[0]:8} {key[1]:5} batch {key[2]:>5}: {s['webhooks_per_s']:.0f} webhooks/s "
              f"[{s['webhooks_per_s_range'][0]:.0f}-{s['webhooks_per_s_range'][1]:.0f}], {s['items_per_s']:.0f} items/s, "
              f"claim {100 * s['claim_share']:.1f}%, {s['statements_per_webhook']:.1f} SQL statements/webhook")
    bad = [r for r in results if not r["ok"]]
    path = save_results("processing", {"machine": machine_info(), "args": vars(args), "runs": results, "summary": summary})
    print(f"\nresults: {path}")
    for r in bad:
        print(f"PROBLEM: {r['backend']} {r['claim']} batch {r['batch_size']} rep {r['rep']}: {r['webhooks']} webhooks, final {r['final_status']}")
    return 1 if bad else 0


def diagnose(args) -> int:
    results = []
    try:
        for rep in range(args.repeat):
            for variant in VARIANTS:
                r = one_case("postgres", 100, args.rows, args.orgs, seed=rep, variant=variant)
                r["rep"] = rep
                results.append(r)
                print(f"{variant:13} rep {rep}: {r['webhooks_per_s']:.0f} webhooks/s, {r['items_per_s']:.0f} items/s, {r['final_status']}, "
                      f"cpu cores bench/pg/other {_cores(r)}", flush=True)
    finally:
        drop_db(DB_NAME)
    print("\nmedian over repetitions:")
    summary = []
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        s = {"variant": variant, "webhooks_per_s": statistics.median(r["webhooks_per_s"] for r in runs),
             "range": [min(r["webhooks_per_s"] for r in runs), max(r["webhooks_per_s"] for r in runs)]}
        summary.append(s)
        print(f"{variant:13} {s['webhooks_per_s']:.0f} webhooks/s [{s['range'][0]:.0f}-{s['range'][1]:.0f}]")
    path = save_results("processing-diagnose", {"machine": machine_info(), "args": vars(args), "runs": results, "summary": summary})
    print(f"\nresults: {path}")
    return 0 if all(r["ok"] for r in results) else 1


from processing_v2 import backlog, compare  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgres,sqlite", help="--legacy only")
    ap.add_argument("--batches", default="100,1000", help="--legacy only")
    ap.add_argument("--batch", type=int, default=1000, help="batch size of compare and --backlog")
    ap.add_argument("--rows", type=int, default=10000, help="pre-landed webhooks per case")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--orgs", type=int, default=3)
    ap.add_argument("--variants", default="engine,reference,old", help="compare: comma list of engine, no_events (the engine without the event outbox), reference, old")
    ap.add_argument("--old-commit", default="8c43a00", help="compare: the commit whose loop is 'old'")
    ap.add_argument("--backlog", action="store_true", help="instead: the engine at a backlog of 1k against 100k")
    ap.add_argument("--backlogs", default="1000,100000", help="--backlog: the two backlog sizes")
    ap.add_argument("--batches-per-case", type=int, default=5, help="--backlog: batches timed per case")
    ap.add_argument("--caps", action="store_true", help="compare and --backlog: the engine with never-binding caps (counted by every claim) instead of the default (none)")
    ap.add_argument("--legacy", action="store_true", help="instead: the earlier run_processing matrix")
    ap.add_argument("--claims", default="fair",
                    help="--legacy: comma list: fair (the claim as shipped) and/or fifo (the claim before 0111b27, bench copy)")
    ap.add_argument("--diagnose", action="store_true",
                    help="instead: Postgres, batch 100: the shipped engine vs durable commits (synchronous_commit on) vs no pool_pre_ping (engine changes made here only)")
    args = ap.parse_args()
    if args.diagnose:
        return diagnose(args)
    if args.legacy:
        if args.rows == 10000 and args.repeat == 3:
            args.rows, args.repeat = 5000, 2
        return legacy(args)
    if args.backlog:
        return backlog(args)
    return compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
