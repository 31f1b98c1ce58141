"""Processing engine v2 benchmarks, run by ``bench/processing.py`` (see its docstring): the engine
against the reference writer and the old loop (``compare``), and backlog size (``backlog``)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from _common import PROJECT_ROOT, cpu_snapshot, drop_db, landing_row, machine_info, save_results

DB_NAME = "wa_bench_processing"
DATA_DIR = Path("/tmp/wa_bench_processing")

#: the child's claims, timed apart (``claim_seconds``); both child scripts include it
TIMED_CLAIM = """claim_seconds = [0.0]
claim = runner.claim_batch
def timed_claim(*args, **kw):
    t = time.perf_counter()
    try:
        return claim(*args, **kw)
    finally:
        claim_seconds[0] += time.perf_counter() - t
runner.claim_batch = timed_claim
"""

ENGINE_CHILD = r"""
import json, logging, sys, time
import sqlalchemy as sa
logging.basicConfig(level=logging.ERROR)
a = json.loads(sys.argv[1])
from wa_core.settings import Settings
from wa_core.db.engine import create_processing_engine
from wa_core.processing import runner
caps = dict(processing_org_webhooks_per_minute=10**9, processing_org_max_in_flight=a["batch"]) if a.get("caps") else {}
settings = Settings(_env_file=None, database_url=a["url"], WA_DATA_DIR=a["dir"], meta_app_secret="bench", processing_batch_size=a["batch"], **caps)
#TIMED_CLAIM
if a.get("no_events"):  # the 'no_events' variant: the outbox drops what it is given (nothing built lazily, nothing written)
    from wa_core.events import outbox

    class _Drop(list):
        def extend(self, items):
            pass

    outbox._pending = lambda conn: _Drop()
engine = create_processing_engine(settings, pool_size=2, max_overflow=2)
statements = [0]
sa.event.listen(engine, "before_cursor_execute", lambda *_a, **_k: statements.__setitem__(0, statements[0] + 1))
cpu0, t0 = time.process_time(), time.perf_counter()
# what a Dagster processing run executes, draining what is claimable, then returning
stats = runner.run_processing(engine, settings, batch_size=a["batch"], idle_exit_seconds=0)
seconds = time.perf_counter() - t0
webhooks, items, batches = stats.webhooks, stats.items_received, stats.batches
print(json.dumps({"webhooks": webhooks, "items": items, "batches": batches, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0,
                  "claim_seconds": claim_seconds[0], "statements": statements[0], "code": runner.__file__}))
"""

OLD_CHILD = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.ERROR)
a = json.loads(sys.argv[1])
from wa_webhook.settings import Settings
from wa_webhook.db.engine import create_processing_engine
from wa_pipelines.processing import runner
settings = Settings(_env_file=None, database_url=a["url"], WA_DATA_DIR=a["dir"], meta_app_secret="bench",
                    processing_org_webhooks_per_minute=10**9, processing_org_max_in_flight=a["batch"])
engine = create_processing_engine(settings, pool_size=2, max_overflow=2)
#TIMED_CLAIM
cpu0, t0 = time.process_time(), time.perf_counter()
stats = runner.run_processing(engine, settings, batch_size=a["batch"], idle_exit_seconds=0)
seconds = time.perf_counter() - t0
print(json.dumps({"webhooks": stats.webhooks, "items": stats.items_received, "batches": stats.batches, "seconds": seconds,
                  "cpu_seconds": time.process_time() - cpu0, "claim_seconds": claim_seconds[0], "code": runner.__file__}))
"""

ENGINE_CHILD, OLD_CHILD = (script.replace("#TIMED_CLAIM\n", TIMED_CLAIM) for script in (ENGINE_CHILD, OLD_CHILD))


def old_tree(commit: str) -> Path:
    """The project at ``commit`` (``git archive``), extracted once under /tmp."""
    root = Path(f"/tmp/wa_bench_old_{commit}")
    if not (root / "wa_pipelines").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", commit], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def run_child(variant: str, url: str, batch: int, old_root: Path | None, caps: bool = False) -> dict:
    args = json.dumps({"url": url, "dir": str(DATA_DIR), "batch": batch, "no_events": variant == "no_events", "caps": caps})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "PROCESSING_", "WA_"))}
    if variant in ("engine", "no_events"):
        cmd, env["PYTHONPATH"], cwd = [sys.executable, "-c", ENGINE_CHILD, args], str(PROJECT_ROOT), PROJECT_ROOT
    elif variant == "reference":
        cmd, cwd = [sys.executable, str(PROJECT_ROOT / "bench" / "reference_writer.py"), url, str(batch)], PROJECT_ROOT
    else:
        cmd, env["PYTHONPATH"], cwd = [sys.executable, "-c", OLD_CHILD, args], str(old_root), old_root
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} child failed: {out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if variant == "old" and not result["code"].startswith(str(old_root)):
        raise RuntimeError(f"old child ran {result['code']}, not the code of {old_root}")
    return result


def _counts(url: str) -> dict:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            q = lambda sql: conn.execute(sa.text(sql)).scalar_one()  # noqa: E731
            return {
                "by_status": dict(conn.execute(sa.text("SELECT status, count(*) FROM whatsapp_webhook_logs GROUP BY status")).all()),
                "messages": q("SELECT count(*) FROM whatsapp_messages"), "statuses": q("SELECT count(*) FROM whatsapp_message_statuses"),
                "contacts": q("SELECT count(*) FROM whatsapp_contacts"), "reactions": q("SELECT count(*) FROM whatsapp_message_reactions"),
                "with_status": q("SELECT count(*) FROM whatsapp_messages WHERE current_status IS NOT NULL"),
            }
    finally:
        engine.dispose()


def compare(args) -> int:
    from processing import prepare

    variants = args.variants.split(",")
    old_root = old_tree(args.old_commit) if "old" in variants else None
    results = []
    print(f"{'rep':>3} {'variant':9} {'rows':>6} {'secs':>6} {'claim':>5} {'webhooks/s':>10} {'items/s':>8} {'apply':>7} {'load1':>5}  child/pg/machine cores  final")
    try:
        for rep in range(args.repeat):
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]  # rotate: nobody always goes first
            for variant in order:
                settings, engine, sizes = prepare("postgres", args.rows, args.orgs, seed=rep)
                engine.dispose()
                url = settings.database_url
                load = os.getloadavg()
                cpu0, started = cpu_snapshot([]), time.perf_counter()
                r = run_child(variant, url, args.batch, old_root, args.caps)
                cpu1, lifetime = cpu_snapshot([]), time.perf_counter() - started
                wall = max(r["seconds"], 1e-9)
                # Postgres and the machine over the child's whole life (start-up included), the child over its drain
                pg, machine = (cpu1["postgres"] - cpu0["postgres"]) / lifetime, (cpu1["machine"] - cpu0["machine"]) / lifetime
                child = r["cpu_seconds"] / wall
                r.update(variant=variant, rep=rep, rows=args.rows, batch=args.batch, loadavg_before=load, loadavg_after=os.getloadavg(),
                         webhooks_per_s=r["webhooks"] / wall, items_per_s=r["items"] / wall, body_bytes_median=statistics.median(sizes),
                         apply_items_per_s=r["items"] / max(wall - r["claim_seconds"], 1e-9),
                         cpu_cores={"child": child, "postgres": pg, "machine": machine}, **_counts(url))
                r["ok"] = r["by_status"] == {"processed": args.rows} and r["webhooks"] == args.rows
                results.append(r)
                c = r["cpu_cores"]
                print(f"{rep:>3} {variant:9} {args.rows:>6} {wall:>6.2f} {r['claim_seconds']:>5.2f} {r['webhooks_per_s']:>10.0f} {r['items_per_s']:>8.0f} "
                      f"{r['apply_items_per_s']:>7.0f} {load[0]:>5.2f}  "
                      f"{c['child']:.2f}/{c['postgres']:.2f}/{c['machine']:.2f}  {r['by_status']} msgs={r['messages']} st={r['statuses']} "
                      f"contacts={r['contacts']}", flush=True)
    finally:
        drop_db(DB_NAME)
    summary = {}
    for variant in variants:
        runs = [r for r in results if r["variant"] == variant]
        summary[variant] = {"items_per_s": statistics.median(r["items_per_s"] for r in runs),
                            "apply_items_per_s": statistics.median(r["apply_items_per_s"] for r in runs),
                            "items_per_s_range": [min(r["items_per_s"] for r in runs), max(r["items_per_s"] for r in runs)],
                            "webhooks_per_s": statistics.median(r["webhooks_per_s"] for r in runs), "runs": len(runs)}
    ratios = {}
    for other in (v for v in variants if v != "engine"):
        if "engine" in summary:
            per_rep = [next(r for r in results if r["variant"] == "engine" and r["rep"] == rep)["items_per_s"]
                       / next(r for r in results if r["variant"] == other and r["rep"] == rep)["items_per_s"] for rep in range(args.repeat)]
            per_rep_apply = [next(r for r in results if r["variant"] == "engine" and r["rep"] == rep)["apply_items_per_s"]
                             / next(r for r in results if r["variant"] == other and r["rep"] == rep)["apply_items_per_s"] for rep in range(args.repeat)]
            ratios[f"engine/{other}"] = {"of_medians": summary["engine"]["items_per_s"] / summary[other]["items_per_s"], "per_repetition": per_rep,
                                         "apply_only_of_medians": summary["engine"]["apply_items_per_s"] / summary[other]["apply_items_per_s"],
                                         "apply_only_per_repetition": per_rep_apply}
    print("\nmedian items/s:", {k: round(v["items_per_s"]) for k, v in summary.items()})
    for name, ratio in ratios.items():
        print(f"{name}: {ratio['of_medians']:.2f}x (per repetition {', '.join(f'{x:.2f}' for x in ratio['per_repetition'])}); "
              f"claims excluded {ratio['apply_only_of_medians']:.2f}x ({', '.join(f'{x:.2f}' for x in ratio['apply_only_per_repetition'])})")
    same = {(r["messages"], r["statuses"], r["contacts"], r["reactions"]) for r in results if r["variant"] in ("engine", "reference") and r["rep"] == 0}
    print("engine and reference wrote the same row counts" if len(same) <= 1 else f"ROW COUNTS DIFFER: {same}")
    path = save_results("processing-v2", {"machine": machine_info(), "args": vars(args), "runs": results, "summary": summary, "ratios": ratios})
    print(f"results: {path}")
    return 0 if all(r["ok"] for r in results) else 1


def _land(engine, stream, n: int) -> None:
    from wa_core.db.schema import utcnow, whatsapp_webhook_logs

    now = utcnow()
    values = [landing_row(stream.next_body(), now) for _ in range(n)]
    with engine.begin() as conn:
        for i in range(0, n, 2000):
            conn.execute(sa.insert(whatsapp_webhook_logs), values[i : i + 2000])


def backlog(args) -> int:
    from _common import fresh_db, make_settings, shipped_engine
    from processing import quota_free

    from wa_core.db.migrate import upgrade
    from wa_core.processing import runner
    from wa_dev.simulate import SyntheticStream, synthetic_numbers
    from wa_dev.up import bind_demo_numbers

    sizes = [int(b) for b in args.backlogs.split(",")]
    results = []
    claim, claim_seconds = runner.claim_batch, [0.0]

    def timed_claim(*a, **kw):
        t0 = time.perf_counter()
        try:
            return claim(*a, **kw)
        finally:
            claim_seconds[0] += time.perf_counter() - t0

    runner.claim_batch = timed_claim
    try:
        for rep in range(args.repeat):
            for size in (sizes if rep % 2 == 0 else sizes[::-1]):
                settings = make_settings(fresh_db(DB_NAME), DATA_DIR)
                upgrade(settings)
                bind_demo_numbers(settings, args.orgs)
                stream = SyntheticStream(synthetic_numbers(args.orgs), seed=rep)
                engine = shipped_engine(settings)
                _land(engine, stream, size)
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(sa.text("VACUUM ANALYZE"))
                # the shipped defaults: no caps (--caps: the v1 bench's never-binding caps, counted per claim)
                fast = quota_free(settings, args.batch) if args.caps else settings
                load, seconds, items, webhooks, per_batch = os.getloadavg(), 0.0, 0, 0, []
                for k in range(args.batches_per_case):
                    if k and size < args.batch * args.batches_per_case:
                        _land(engine, stream, args.batch)  # keep the small backlog at its size (not timed)
                    with engine.connect() as conn:
                        waiting = conn.execute(sa.text("SELECT count(*) FROM whatsapp_webhook_logs WHERE status = 'pending'")).scalar_one()
                    t0, claimed_before = time.perf_counter(), claim_seconds[0]
                    outcomes = runner.process_batch(engine, fast, limit=args.batch)
                    took = time.perf_counter() - t0
                    seconds, webhooks = seconds + took, webhooks + len(outcomes)
                    items += sum(o.items_received for o in outcomes)
                    per_batch.append({"backlog": waiting, "seconds": took, "claim_seconds": claim_seconds[0] - claimed_before,
                                      "webhooks": len(outcomes)})
                engine.dispose()
                claimed = sum(b["claim_seconds"] for b in per_batch)
                r = {"rep": rep, "backlog": size, "batch": args.batch, "seconds": seconds, "claim_seconds": claimed, "webhooks": webhooks,
                     "items": items, "items_per_s": items / seconds, "apply_items_per_s": items / (seconds - claimed),
                     "webhooks_per_s": webhooks / seconds, "loadavg_before": load, "batches": per_batch}
                results.append(r)
                print(f"rep {rep} backlog {size:>6}: {r['items_per_s']:.0f} items/s ({r['apply_items_per_s']:.0f} claims excluded, "
                      f"claims {claimed:.2f} s), {r['webhooks_per_s']:.0f} webhooks/s "
                      f"({webhooks} webhooks in {seconds:.2f} s, backlog at claims {[b['backlog'] for b in per_batch]}), load {load[0]:.2f}", flush=True)
    finally:
        runner.claim_batch = claim
        drop_db(DB_NAME)
    medians = {size: statistics.median(r["items_per_s"] for r in results if r["backlog"] == size) for size in sizes}
    apply = {size: statistics.median(r["apply_items_per_s"] for r in results if r["backlog"] == size) for size in sizes}
    ratio, apply_ratio = medians[sizes[1]] / medians[sizes[0]], apply[sizes[1]] / apply[sizes[0]]
    print(f"\nmedian items/s {medians}; backlog {sizes[1]} / backlog {sizes[0]} = {ratio:.2f}; claims excluded {apply_ratio:.2f}")
    path = save_results("processing-backlog", {"machine": machine_info(), "args": vars(args), "runs": results,
                                               "median_items_per_s": medians, "ratio": ratio,
                                               "apply_median_items_per_s": apply, "apply_ratio": apply_ratio})
    print(f"results: {path}")
    return 0
