"""Processing-loop throughput: ``run_processing`` over pre-landed webhooks, Postgres and SQLite.

For each backend, batch size and repetition: a fresh database (``wa_bench_processing`` on
Postgres, a new SQLite file under /tmp), migrated, demo numbers bound with ``up``'s
``bind_demo_numbers``, then N synthetic ``SyntheticStream`` bodies inserted directly as
``pending`` rows as the receiver lands them (with the routing hint ``waba_id``),
``ANALYZE``d on Postgres, then timed:

    run_processing(engine, quota_free_settings, batch_size=B, idle_exit_seconds=0)

in this process with the engine a Dagster run uses (no Dagster: this is the loop a Dagster
run executes; see ``shipped_engine``).

Quotas: since 0111b27 the claim is a fair claim (per-organization lanes, a ``row_number()``
window over the claimable rows joined to the bindings, an advisory lock, per-lane counts)
with per-organization quotas (``PROCESSING_ORG_WEBHOOKS_PER_MINUTE`` = 100,
``PROCESSING_ORG_MAX_IN_FLIGHT`` = 10 by default). With those, this script would measure the
quota (3 organizations x 100/min), not the loop. It therefore passes explicit high quotas:
``processing_org_webhooks_per_minute`` = 10**9 and ``processing_org_max_in_flight`` = B (a
lane can then fill a whole batch; a larger in-flight cap would only make the claim fetch more
candidate rows). The claim code itself, window function included, runs as shipped.
``bench/fairness.py`` measures the claim with the default quotas.

Reported: webhooks/s, items/s (items received = messages + statuses), the share of time
spent in ``claim_batch``, SQL statements per webhook, and a check that every row ended
``processed``. ``--claims fair,fifo`` also runs each case with the claim as it was before
the fair claim (``_common.fifo_claim_batch``, bench copy) for a same-session comparison.

Usage (about 3 minutes with the defaults on a 2-vCPU VM; twice that with --claims fair,fifo):
    .venv/bin/python bench/processing.py
    .venv/bin/python bench/processing.py --rows 2000 --repeat 1 --backends postgres  # quick
    .venv/bin/python bench/processing.py --rows 5000 --repeat 2 --claims fair,fifo  # before/after
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from _common import (bench_database, cpu_snapshot, drop_db, fifo_claim_batch, insert_landed, landing_row, machine_info,
                     save_results, shipped_engine)

import sqlalchemy as sa

DB_NAME = "wa_bench_processing"
VARIANTS = ("as_shipped", "durable_commit", "no_pre_ping")
DATA_DIR = Path("/tmp/wa_bench_processing")  # the SQLite file on SQLite


def prepare(backend: str, rows: int, orgs: int, seed: int):
    from wa_core.db.schema import utcnow
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    settings = bench_database(backend, DB_NAME, DATA_DIR, orgs=orgs)
    stream = SyntheticStream(synthetic_numbers(orgs), seed=seed)
    now = utcnow()
    values = [landing_row(stream.next_body(), now) for _ in range(rows)]
    engine = shipped_engine(settings)
    with engine.begin() as conn:
        insert_landed(conn, values)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="postgres,sqlite")
    ap.add_argument("--batches", default="100,1000")
    ap.add_argument("--rows", type=int, default=5000, help="pre-landed webhooks per case")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--orgs", type=int, default=3)
    ap.add_argument("--claims", default="fair",
                    help="comma list: fair (the claim as shipped) and/or fifo (the claim before 0111b27, bench copy)")
    ap.add_argument("--diagnose", action="store_true",
                    help="instead: Postgres, batch 100: the shipped engine vs durable commits (synchronous_commit on) vs no pool_pre_ping (engine changes made here only)")
    args = ap.parse_args()
    if args.diagnose:
        return diagnose(args)

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
        shutil.rmtree(DATA_DIR, ignore_errors=True)

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


if __name__ == "__main__":
    raise SystemExit(main())
