"""Fair claims: what one ``claim_batch`` costs as the backlog grows, and a flood scenario.

Part ``claim`` (cost of one claim). One flooding organization has N claimable rows
(N = 1k, 10k, 100k on Postgres; 1k, 10k on SQLite), 20 other organizations have 5 rows
each (landed after the flood, i.e. the newest ids). Bodies are real ``SyntheticStream``
bodies landed as the receiver lands them (``waba_id`` = ``routing_waba_id(body)``), the
organizations bound with ``up``'s ``bind_demo_numbers``; Postgres is ``VACUUM ANALYZE``d
after each step. ``claim_batch(engine, 200, lease)`` runs with the default quotas
(``PROCESSING_ORG_MAX_IN_FLIGHT`` = 10, ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE`` = 100) on the
engine a Dagster run uses, in two states:

- ``open``: every lane has its whole allowance: a claim takes 10 flood rows and the 5 rows
  of each other organization (110 rows). The leased rows are put back (untimed) after each
  sample, so every sample sees the same backlog.
- ``throttled``: only the flood waits and it used its 100 claims of the last minute (100
  extra processed flood rows claimed just now): the claim finds work and takes nothing.
  This is the claim a run repeats once a second while a flood waits out its quota.

Reported per backlog and state: median and p95 ms per claim, rows claimed, ``held_back``,
and the median time of each statement of the claim (advisory lock, in-flight counts, counts
of the last minute, the ranked window query, the UPDATE). For comparison, the claim as it
was before 0111b27 (``fifo``: oldest 200 rows, ``FOR UPDATE SKIP LOCKED``, no quotas; a
bench copy in ``_common.py``). On Postgres at the largest backlog: ``EXPLAIN (ANALYZE,
BUFFERS)`` of the claim's SELECT statements exactly as the product sent them.

Part ``flood`` (fairness with ``run_processing``). One organization lands 2000 webhooks at
once; 5 other organizations send 20 each, spread evenly (round robin) while the flood is
worked off. One processing run (``run_processing``, default batch size and poll, the
shipped engine) works until everything is processed; landing happens in a separate thread
with its own engine, as the receiver would. The quota per minute is raised to 600 by default
(``--per-minute``) so that the flood spans four quota windows in about 3 minutes instead of
20 minutes at 100/min; the in-flight cap stays 10. Reported per organization: time from
landing (``received_at``) to processed (``processed_at``), p50/p95/max; the flood's claims
per quota window and its maximum in any rolling 60 s (must be <= the quota); and the same
other organizations without a flood (``baseline``, 20 s) for comparison.

Databases: ``wa_bench_fairness`` (Postgres), files under /tmp/wa_bench_fairness;
both are removed at the end.

Usage (about 5 minutes with the defaults):
    .venv/bin/python bench/fairness.py
    .venv/bin/python bench/fairness.py --parts claim --backlogs 1000,10000 --samples 10   # quick
    .venv/bin/python bench/fairness.py --parts flood --flood 600 --per-minute 600          # ~1 min
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import threading
import time
from datetime import timedelta
from pathlib import Path

from _common import (bench_database, cpu_snapshot, drop_db, fifo_claim_batch, insert_landed, landing_row, machine_info,
                     save_results, shipped_engine)

import sqlalchemy as sa

from wa_core.reporting.stats import percentile

DB_NAME = "wa_bench_fairness"
DATA_DIR = Path("/tmp/wa_bench_fairness")  # the SQLite file on SQLite
CLAIM_LIMIT = 200  # PROCESSING_BATCH_SIZE default
LEASE_SECONDS = 300.0

# --- the candidate query: as shipped, and a proposal (measured here only, not product code) ---
# Same text as the window query wa_core/processing/claim.py builds (checked against it below).
_CLAIMABLE = ("(l.status = 'pending' OR (l.status = 'failed' AND l.next_attempt_at <= :now)) "
              "AND (l.locked_until IS NULL OR l.locked_until < :now)")
SHIPPED_CANDIDATES = f"""
SELECT id, lane, locked_until, rank FROM (
  SELECT l.id, coalesce(l.organization_id, c.organization_id) AS lane, l.locked_until,
         row_number() OVER (PARTITION BY coalesce(l.organization_id, c.organization_id) ORDER BY l.id) AS rank
  FROM whatsapp_webhook_logs l LEFT JOIN whatsapp_connections c ON c.waba_id = l.waba_id
  WHERE {_CLAIMABLE}) r
WHERE rank <= :k1 ORDER BY id"""
# Proposal: rank only the first k+1 claimable rows of each WABA instead of every claimable row.
# The WABAs with work are enumerated by a skip scan (recursive CTE, one index probe per WABA),
# each WABA's oldest rows come from an index on (waba_id, id); the lane join and row_number()
# then run on at most (WABAs + 1) * (k + 1) rows. Needs PROPOSED_INDEX. The claimable test is
# written as NOT (failed and not yet due) so that the planner walks that index in id order
# instead of bitmap-scanning ix_whatsapp_webhook_logs_claimable for every WABA.
PROPOSED_INDEX = ("CREATE INDEX ix_bench_logs_open_by_waba ON whatsapp_webhook_logs (waba_id, id) "
                  "WHERE status IN ('pending', 'failed')")
_CLAIMABLE_OPEN = ("NOT (l.status = 'failed' AND (l.next_attempt_at IS NULL OR l.next_attempt_at > :now)) "
                   "AND (l.locked_until IS NULL OR l.locked_until < :now)")
PROPOSED_CANDIDATES = f"""
WITH RECURSIVE wabas(waba_id) AS (
  SELECT min(waba_id) FROM whatsapp_webhook_logs WHERE status IN ('pending', 'failed')
  UNION ALL
  SELECT (SELECT min(l.waba_id) FROM whatsapp_webhook_logs l WHERE l.status IN ('pending', 'failed') AND l.waba_id > w.waba_id)
  FROM wabas w WHERE w.waba_id IS NOT NULL
), firsts AS (
  SELECT t.id, t.organization_id, t.waba_id, t.locked_until FROM wabas w CROSS JOIN LATERAL (
    SELECT l.id, l.organization_id, l.waba_id, l.locked_until FROM whatsapp_webhook_logs l
    WHERE l.status IN ('pending', 'failed') AND l.waba_id = w.waba_id AND {_CLAIMABLE_OPEN} ORDER BY l.id LIMIT :k1) t
  WHERE w.waba_id IS NOT NULL
  UNION ALL
  (SELECT l.id, l.organization_id, l.waba_id, l.locked_until FROM whatsapp_webhook_logs l
   WHERE l.status IN ('pending', 'failed') AND l.waba_id IS NULL AND {_CLAIMABLE_OPEN} ORDER BY l.id LIMIT :k1)
)
SELECT id, lane, locked_until, rank FROM (
  SELECT f.id, coalesce(f.organization_id, c.organization_id) AS lane, f.locked_until,
         row_number() OVER (PARTITION BY coalesce(f.organization_id, c.organization_id) ORDER BY f.id) AS rank
  FROM firsts f LEFT JOIN whatsapp_connections c ON c.waba_id = f.waba_id) r
WHERE rank <= :k1 ORDER BY id"""


# --- set-up -----------------------------------------------------------------------------
def prepare(backend: str, orgs: int):
    """Fresh migrated database with the corpus numbers and ``orgs`` synthetic organizations bound."""
    return bench_database(backend, DB_NAME, DATA_DIR, orgs=orgs)


def cleanup() -> None:
    drop_db(DB_NAME)
    shutil.rmtree(DATA_DIR, ignore_errors=True)


def land(conn, bodies: list[bytes], **overrides) -> None:
    from wa_core.db.schema import utcnow

    now = utcnow()
    insert_landed(conn, [dict(landing_row(b, now), **overrides) for b in bodies])


def analyze(engine) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE whatsapp_webhook_logs"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))


# --- part 1: cost of one claim -------------------------------------------------------------
def _kind(statement: str) -> str:
    s = " ".join(statement.split()).lower()
    if "pg_advisory_xact_lock" in s:
        return "lock"
    if "row_number()" in s:
        return "window"
    if s.startswith("update"):
        return "update"
    if "count(" in s and "locked_until >=" in s:
        return "in_flight_counts"
    if "count(" in s and "claimed_at >=" in s:
        return "minute_counts"
    if s.startswith("select") and "for update" in s:
        return "fifo_select"
    return "other"


class StatementTimer:
    """Per-statement wall time on ``engine`` (cursor execute to result), by kind."""

    def __init__(self, engine):
        self.engine = engine
        self.current: dict[str, float] = {}
        self.captured: list[tuple[str, object]] = []
        self.capture = False
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, _cursor, statement, parameters, _context, _many):
        conn.info["bench_t0"] = time.perf_counter()
        if self.capture:
            self.captured.append((statement, parameters))

    def _after(self, conn, _cursor, statement, _parameters, _context, _many):
        kind = _kind(statement)
        self.current[kind] = self.current.get(kind, 0.0) + 1000 * (time.perf_counter() - conn.info.pop("bench_t0"))

    def take(self) -> dict[str, float]:
        out, self.current = self.current, {}
        return out

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)


def _release(engine, ids: list[int]) -> None:
    """Put leased rows back as they were landed (untimed)."""
    from wa_core.db.schema import whatsapp_webhook_logs as logs

    if ids:
        with engine.begin() as conn:
            conn.execute(sa.update(logs).where(logs.c.id.in_(ids)).values(locked_until=None, claimed_at=None, attempts=0))


def _sample_claims(engine, timer: StatementTimer, samples: int, fn, **kw) -> dict:
    times, claimed, held, parts = [], [], [], []
    for i in range(samples + 3):  # 3 warm-up claims
        timer.take()
        t0 = time.perf_counter()
        claim = fn(engine, CLAIM_LIMIT, LEASE_SECONDS, **kw)
        ms = 1000 * (time.perf_counter() - t0)
        statements = timer.take()
        _release(engine, [r.id for r in claim])
        if i >= 3:
            times.append(ms)
            claimed.append(len(claim))
            held.append(getattr(claim, "held_back", 0))
            parts.append(statements)
    kinds = sorted({k for p in parts for k in p})
    return {
        "samples": len(times),
        "ms_median": statistics.median(times), "ms_p95": percentile(times, 95), "ms_min": min(times), "ms_max": max(times),
        "rows_claimed": statistics.median(claimed), "held_back": statistics.median(held),
        "statement_ms_median": {k: statistics.median(p.get(k, 0.0) for p in parts) for k in kinds},
        # the rest of a claim: pool checkout, SQLAlchemy compile and result handling, commit
        "outside_statements_ms_median": statistics.median(t - sum(p.values()) for t, p in zip(times, parts)),
    }


def _explain(engine, captured: list[tuple[str, object]]) -> list[dict]:
    out = []
    with engine.connect() as conn:
        for statement, params in captured:
            kind = _kind(statement)
            if kind not in ("in_flight_counts", "minute_counts", "window"):
                continue
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).scalars().all()
            out.append({"kind": kind, "sql": statement, "plan": plan})
        conn.rollback()
    return out


def _time_query(engine, sql: str, k1: int, samples: int, setup: str | None = None) -> tuple[dict, list]:
    from wa_core.db.schema import utcnow

    times, rows = [], []
    for i in range(samples + 3):
        with engine.begin() as conn:
            if setup:
                conn.exec_driver_sql(setup)
            t0 = time.perf_counter()
            rows = [tuple(r) for r in conn.execute(sa.text(sql), {"now": utcnow(), "k1": k1}).all()]
            if i >= 3:
                times.append(1000 * (time.perf_counter() - t0))
    return {"ms_median": statistics.median(times), "ms_p95": percentile(times, 95), "candidates": len(rows)}, rows


def candidate_queries(engine, k1: int, samples: int, explain: bool, product_window: tuple) -> dict:
    """Postgres: the shipped candidate query (default ``work_mem``, then 32 MB) against the
    proposal with its partial index, created for the measurement and dropped again.
    ``product_window``: (statement, parameters) of the window query as claim.py sent it, to
    check that SHIPPED_CANDIDATES is the same query."""
    from wa_core.db.schema import utcnow

    out = {}
    out["shipped"], shipped_rows = _time_query(engine, SHIPPED_CANDIDATES, k1, samples)
    with engine.connect() as conn:
        product_rows = conn.exec_driver_sql(*product_window).all()
        conn.rollback()
    out["replica_matches_claim_py"] = [r[:2] for r in product_rows] == [r[:2] for r in shipped_rows]
    out["shipped_work_mem_32MB"], _ = _time_query(engine, SHIPPED_CANDIDATES, k1, samples, "SET LOCAL work_mem = '32MB'")
    with engine.begin() as conn:
        conn.exec_driver_sql(PROPOSED_INDEX)
    analyze(engine)
    try:
        out["proposed"], proposed_rows = _time_query(engine, PROPOSED_CANDIDATES, k1, samples)
        out["proposed_same_candidates"] = proposed_rows == shipped_rows
        with engine.connect() as conn:
            size = conn.execute(sa.text("SELECT pg_relation_size('ix_bench_logs_open_by_waba')")).scalar_one()
            out["proposed_index_bytes"] = size
            if explain:
                out["explain_proposed"] = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + PROPOSED_CANDIDATES),
                                                       {"now": utcnow(), "k1": k1}).scalars().all()
            conn.rollback()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX IF EXISTS ix_bench_logs_open_by_waba")
    return out


def claim_cost(backend: str, backlogs: list[int], others: int, other_rows: int, samples: int, explain: bool,
               history: int = 0) -> dict:
    from wa_core.processing.claim import claim_batch
    from wa_core.db.schema import utcnow, whatsapp_webhook_logs as logs
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    settings = prepare(backend, others + 1)
    quotas = {"org_max_in_flight": settings.processing_org_max_in_flight, "org_per_minute": settings.processing_org_webhooks_per_minute}
    engine = shipped_engine(settings)
    numbers = synthetic_numbers(others + 1)
    flood_waba = numbers[0].waba_id
    flood_stream = SyntheticStream([numbers[0]], seed=11)
    other_streams = [SyntheticStream([n], seed=100 + i) for i, n in enumerate(numbers[1:])]
    if history:  # processed rows of all organizations, as retention keeps them, claimed an hour ago
        old = utcnow() - timedelta(hours=1)
        history_stream = SyntheticStream(numbers, seed=5)
        with engine.begin() as conn:
            land(conn, [history_stream.next_body() for _ in range(history)],
                 status="processed", claimed_at=old, processed_at=old, attempts=1)
    timer = StatementTimer(engine)
    results, landed = [], 0
    try:
        for backlog in sorted(backlogs):
            t_land = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(sa.delete(logs).where(logs.c.request_id == "bench-other"))  # re-landed below, newest
                land(conn, [flood_stream.next_body() for _ in range(backlog - landed)])
                landed = backlog
                land(conn, [s.next_body() for s in other_streams for _ in range(other_rows)], request_id="bench-other")
            analyze(engine)
            land_s = time.perf_counter() - t_land
            row = {"backend": backend, "backlog": backlog, "history": history, "others": others, "other_rows": other_rows, "quotas": quotas,
                   "land_seconds": land_s}
            cpu0, t_cpu = cpu_snapshot([os.getpid()]), time.perf_counter()
            row["open"] = _sample_claims(engine, timer, samples, claim_batch, **quotas)
            if backend == "postgres":
                timer.capture = True
                _release(engine, [r.id for r in claim_batch(engine, CLAIM_LIMIT, LEASE_SECONDS, **quotas)])
                timer.capture = False
                product_window = next((st, pa) for st, pa in timer.captured if _kind(st) == "window")
                if explain and backlog == max(backlogs):
                    row["explain_open"] = _explain(engine, timer.captured)
                timer.captured = []
            row["fifo"] = _sample_claims(engine, timer, samples, fifo_claim_batch)
            if backend == "postgres":
                row["candidates"] = candidate_queries(engine, quotas["org_max_in_flight"] + 1, samples,
                                                      explain and backlog == max(backlogs), product_window)
            # throttled: only the flood waits, and it used its quota of the last minute
            with engine.begin() as conn:
                conn.execute(sa.update(logs).where(logs.c.request_id == "bench-other").values(status="processed"))
                now = utcnow()
                land(conn, [flood_stream.next_body() for _ in range(quotas["org_per_minute"])],
                     status="processed", claimed_at=now, processed_at=now, attempts=1, request_id="bench-quota")
            row["throttled"] = _sample_claims(engine, timer, samples, claim_batch, **quotas)
            cpu1, wall = cpu_snapshot([os.getpid()]), time.perf_counter() - t_cpu
            row["cpu_cores"] = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0}
            row["cpu_cores"]["other"] = max(0.0, row["cpu_cores"]["machine"] - row["cpu_cores"]["server"] - row["cpu_cores"]["postgres"])
            with engine.begin() as conn:
                conn.execute(sa.delete(logs).where(logs.c.request_id == "bench-quota"))
            results.append(row)
            o, t, f = row["open"], row["throttled"], row["fifo"]
            print(f"{backend:8} backlog {backlog:>7}: open {o['ms_median']:7.1f} ms (p95 {o['ms_p95']:7.1f}) {o['rows_claimed']:>4.0f} rows | "
                  f"throttled {t['ms_median']:7.1f} ms (p95 {t['ms_p95']:7.1f}) {t['rows_claimed']:>3.0f} rows, held_back {t['held_back']:.0f} | "
                  f"fifo {f['ms_median']:5.1f} ms {f['rows_claimed']:>4.0f} rows   (landing {land_s:.0f} s, "
                  f"other load {row['cpu_cores']['other']:.2f} cores)", flush=True)
            print(f"{'':8} statements (open, median ms): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in o["statement_ms_median"].items())
                  + f"; outside the statements {o['outside_statements_ms_median']:.1f}", flush=True)
            if "candidates" in row:
                c = row["candidates"]
                print(f"{'':8} candidate query alone: shipped {c['shipped']['ms_median']:.1f} ms "
                      f"(work_mem 32MB {c['shipped_work_mem_32MB']['ms_median']:.1f}), proposed with partial index "
                      f"{c['proposed']['ms_median']:.1f} ms, same candidates: {c['proposed_same_candidates']} "
                      f"(replica = claim.py's query: {c['replica_matches_claim_py']}), "
                      f"index {c['proposed_index_bytes'] / 1024:.0f} KiB", flush=True)
            if "explain_open" in row:
                for e in row["explain_open"]:
                    print(f"\n  EXPLAIN ANALYZE ({e['kind']}):\n    " + "\n    ".join(e["plan"]))
                if "explain_proposed" in row.get("candidates", {}):
                    print("\n  EXPLAIN ANALYZE (proposed candidate query):\n    " + "\n    ".join(row["candidates"]["explain_proposed"]))
                print()
    finally:
        timer.remove()
        engine.dispose()
    return {"backend": backend, "steps": results}


# --- part 2: flood scenario -------------------------------------------------------------------
def _lander(settings, bodies: list[tuple[str, bytes]], start: float, span: float, errors: list) -> None:
    """Land ``bodies`` evenly over ``span`` seconds from ``start`` (monotonic), one insert and
    commit each, with an engine of its own (the receiver's role)."""
    from wa_core.db.engine import create_sync_engine

    engine = create_sync_engine(settings, pool_size=1, max_overflow=0) if settings.is_postgres else create_sync_engine(settings)
    try:
        for i, (_, body) in enumerate(bodies):
            delay = start + (i + 0.5) * span / len(bodies) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with engine.begin() as conn:
                land(conn, [body])
    except Exception as exc:  # noqa: BLE001 - reported by the main thread
        errors.append(repr(exc))
    finally:
        engine.dispose()


def _org_latencies(engine, external_by_waba: dict[str, str]) -> tuple[dict, dict]:
    from wa_core.db.schema import as_utc, whatsapp_webhook_logs as logs

    with engine.connect() as conn:
        rows = conn.execute(sa.select(logs.c.waba_id, logs.c.received_at, logs.c.claimed_at, logs.c.processed_at, logs.c.status)).all()
    lat: dict[str, list[float]] = {}
    times: dict[str, list] = {}
    for r in rows:
        org = external_by_waba.get(r.waba_id, r.waba_id)
        if r.status != "processed":
            lat.setdefault(org, [])
            continue
        lat.setdefault(org, []).append((as_utc(r.processed_at) - as_utc(r.received_at)).total_seconds())
        times.setdefault(org, []).append((as_utc(r.received_at), as_utc(r.claimed_at), as_utc(r.processed_at)))
    return lat, times


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values), "min": min(values)}


def scenario(backend: str, name: str, flood: int, others: int, per_other: int, per_minute: int, in_flight: int, span: float) -> dict:
    import wa_core.processing.runner as runner
    from wa_core.db.schema import whatsapp_webhook_logs as logs
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    settings = prepare(backend, others + 1)
    settings = settings.model_copy(update={"processing_org_webhooks_per_minute": per_minute, "processing_org_max_in_flight": in_flight})
    numbers = synthetic_numbers(others + 1)
    external_by_waba = {n.waba_id: n.org_external_id for n in numbers}
    flood_org = numbers[0].org_external_id
    streams = [SyntheticStream([n], seed=200 + i) for i, n in enumerate(numbers[1:])]
    other_bodies = [(numbers[1 + j].org_external_id, streams[j].next_body()) for _ in range(per_other) for j in range(others)]
    engine = shipped_engine(settings)

    claim_stats = {"calls": 0, "seconds": 0.0, "empty": 0}
    original = runner.claim_batch

    def timed_claim(*a, **kw):
        t0 = time.perf_counter()
        try:
            claim = original(*a, **kw)
            claim_stats["empty"] += not claim
            return claim
        finally:
            claim_stats["calls"] += 1
            claim_stats["seconds"] += time.perf_counter() - t0

    runner.claim_batch = timed_claim
    errors: list[str] = []
    runs = []
    try:
        if flood:
            with engine.begin() as conn:
                land(conn, [SyntheticStream([numbers[0]], seed=199).next_body() for _ in range(flood)])
        start = time.monotonic()
        lander = threading.Thread(target=_lander, args=(settings, other_bodies, start, span, errors), daemon=True)
        cpu0 = cpu_snapshot([os.getpid()])
        lander.start()
        while True:
            stats = runner.run_processing(engine, settings, idle_exit_seconds=2.0, max_seconds=1800)
            runs.append({"seconds": stats.seconds, "webhooks": stats.webhooks, "batches": stats.batches,
                         "throttled_claims": stats.throttled_claims})
            with engine.connect() as conn:
                left = conn.execute(sa.select(sa.func.count()).select_from(logs).where(logs.c.status != "processed")).scalar_one()
            if not lander.is_alive() and not left:
                break
        elapsed = time.monotonic() - start
        cpu1 = cpu_snapshot([os.getpid()])
        lander.join()
    finally:
        runner.claim_batch = original
    lat, times = _org_latencies(engine, external_by_waba)
    engine.dispose()

    out = {"backend": backend, "scenario": name, "flood": flood, "others": others, "per_other": per_other,
           "quotas": {"per_minute": per_minute, "max_in_flight": in_flight}, "others_span_seconds": span,
           "seconds": elapsed, "runs": runs, "lander_errors": errors,
           "claims": {**claim_stats, "ms_mean": 1000 * claim_stats["seconds"] / max(1, claim_stats["calls"])},
           "cpu_cores": {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0},
           "per_org": {org: _summary(v) for org, v in sorted(lat.items())},
           "others_all": _summary([x for org, v in lat.items() if org != flood_org for x in v])}
    if flood and times.get(flood_org):
        t = times[flood_org]
        t0 = min(r for r, _, _ in t)
        claimed = sorted((c - t0).total_seconds() for _, c, _ in t)
        done = max((p - t0).total_seconds() for _, _, p in t)
        windows = [0] * (int(claimed[-1] // 60) + 1)
        for c in claimed:
            windows[int(c // 60)] += 1
        j, rolling = 0, 0
        for i, c in enumerate(claimed):  # max claims in any rolling 60 s
            while claimed[j] <= c - 60:
                j += 1
            rolling = max(rolling, i - j + 1)
        out["flood_rate"] = {"processed": len(t), "landed_to_last_processed_s": done, "webhooks_per_minute": 60 * len(t) / done,
                             "claims_per_60s_window_from_landing": windows, "max_claims_in_rolling_60s": rolling,
                             "within_quota": rolling <= per_minute}
    return out


def _print_scenario(s: dict) -> None:
    c = s["cpu_cores"]
    print(f"\n{s['backend']} / {s['scenario']}: {s['seconds']:.0f} s, {len(s['runs'])} run(s), "
          f"{s['claims']['calls']} claims ({s['claims']['empty']} empty, mean {s['claims']['ms_mean']:.1f} ms), "
          f"cpu cores bench/pg/other {c['server']:.2f}/{c['postgres']:.2f}/{max(0.0, c['machine'] - c['server'] - c['postgres']):.2f}"
          + (f", LANDER ERRORS {s['lander_errors']}" if s["lander_errors"] else ""))
    print(f"  {'organization':14} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for org, v in list(s["per_org"].items()) + [("others (all)", s["others_all"])]:
        if v["n"]:
            print(f"  {org:14} {v['n']:>5} {v['p50']:>7.2f} {v['p95']:>7.2f} {v['max']:>7.2f}")
    if "flood_rate" in s:
        f = s["flood_rate"]
        print(f"  flood: {f['processed']} processed in {f['landed_to_last_processed_s']:.0f} s = {f['webhooks_per_minute']:.0f}/min; "
              f"claims per 60 s window from landing {f['claims_per_60s_window_from_landing']}; "
              f"max in any rolling 60 s {f['max_claims_in_rolling_60s']} (quota {s['quotas']['per_minute']})")


# --- main -------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="claim,flood")
    ap.add_argument("--backlogs", default="1000,10000,100000", help="flooding organization's claimable rows (Postgres)")
    ap.add_argument("--sqlite-backlogs", default="1000,10000", help="the same on SQLite ('' = skip SQLite)")
    ap.add_argument("--other-orgs", type=int, default=20, help="claim part: organizations besides the flood")
    ap.add_argument("--other-rows", type=int, default=5, help="claim part: claimable rows of each other organization")
    ap.add_argument("--samples", type=int, default=30, help="claim part: timed claims per backlog and state")
    ap.add_argument("--no-explain", action="store_true")
    ap.add_argument("--history", type=int, default=0,
                    help="claim part: processed rows landed before the backlog (what retention keeps), e.g. 300000")
    ap.add_argument("--flood-backends", default="postgres")
    ap.add_argument("--flood", type=int, default=2000, help="flood part: webhooks landed at once by one organization")
    ap.add_argument("--flood-others", type=int, default=5)
    ap.add_argument("--per-other", type=int, default=20)
    ap.add_argument("--per-minute", type=int, default=600, help="flood part: PROCESSING_ORG_WEBHOOKS_PER_MINUTE (default 100)")
    ap.add_argument("--in-flight", type=int, default=10, help="flood part: PROCESSING_ORG_MAX_IN_FLIGHT")
    ap.add_argument("--baseline-span", type=float, default=20.0, help="flood part: seconds over which the no-flood baseline lands")
    args = ap.parse_args()
    parts = set(args.parts.split(","))

    out = {"machine": machine_info(), "args": vars(args), "claim_cost": [], "flood": []}
    ok = True
    try:
        if "claim" in parts:
            plan = [("postgres", [int(b) for b in args.backlogs.split(",") if b])]
            if args.sqlite_backlogs:
                plan.append(("sqlite", [int(b) for b in args.sqlite_backlogs.split(",") if b]))
            for backend, backlogs in plan:
                out["claim_cost"].append(claim_cost(backend, backlogs, args.other_orgs, args.other_rows, args.samples, not args.no_explain,
                                                    args.history))
                cleanup()
        if "flood" in parts:
            # the flood spans ceil(flood / quota) quota windows; the others arrive over all but the last minute of it
            span = max(args.baseline_span, 60.0 * (math.ceil(args.flood / args.per_minute) - 1))
            for backend in args.flood_backends.split(","):
                for name, flood, s in (("baseline", 0, args.baseline_span), ("flood", args.flood, span)):
                    r = scenario(backend, name, flood, args.flood_others, args.per_other, args.per_minute, args.in_flight, s)
                    out["flood"].append(r)
                    _print_scenario(r)
                    ok &= not r["lander_errors"] and all(v["n"] for v in r["per_org"].values()) and r.get("flood_rate", {}).get("within_quota", True)
                    cleanup()
    finally:
        cleanup()
    path = save_results("fairness", out)
    print(f"\nresults: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
