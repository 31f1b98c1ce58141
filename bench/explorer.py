"""Webhook explorer: each search kind at 1M landed rows, a trace, and what the explorer costs
the hot paths (the landing insert, the processing engine).

1. ``--rows`` (default 1,000,000) landed webhooks filled in SQL with ``generate_series``
   (30 days of arrivals; 97 % processed, 2 % failed, 1 % dead; fields, WABAs, numbers and
   contacts skewed like production), each with its search keys (waba_id, field,
   phone_number_id, wamid, wa_id, user_id for 5 %) and one item row, then ``ANALYZE``.
2. Every search kind of :mod:`wa_core.explorer.search` through ``search_webhooks`` (Python
   included), ``--repeat`` different values each: median and p95 in ms, and the plan's top node.
3. ``trace_webhook`` of random rows.
4. Landing: single-row inserts/s of the receiver's statement (own transaction each) on the
   1M-row table with the explorer's ``received_at`` index and without it, and with a GIN
   index on a parsed ``jsonb`` copy of the body (the alternative to extracted keys), interleaved.
5. Read API: the conversations list and a thread's first page over one organization with
   ``--read-messages`` messages and ``--read-contacts`` contacts.
6. Processing: ``run_processing`` items/s over ``--process-rows`` pre-landed realistic
   webhooks with the explorer's key/item writes and with them switched off, interleaved.

Run: ``.venv/bin/python bench/explorer.py`` (about 6 minutes on the bench machine).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_database, combined_bodies, drop_db, insert_landed, landing_row, machine_info, save_results, shipped_engine  # noqa: E402

FILL = """
INSERT INTO whatsapp_webhook_logs (id, received_at, body, body_sha256, body_size, signature_status, request_id, waba_id,
    status, attempts, fields, error_kind, last_error, items_received, items_processed, items_ignored, items_failed, items_dead,
    processed_at, updated_at)
SELECT g, now() - interval '30 days' * (1 - g::float / %(n)s),
  convert_to('{"object":"whatsapp_business_account","entry":[{"id":"' || (100000000000000 + g %% 1000) || '","changes":[{"field":"messages","value":{"messages":[{"id":"wamid.B' || g || '"}]}}]}]}' || repeat(' ', 600), 'UTF8'),
  md5(g::text) || md5(g::text), 700, 'valid', md5(g::text), (100000000000000 + g %% 1000)::text,
  CASE WHEN g %% 100 = 0 THEN 'dead' WHEN g %% 50 = 1 THEN 'failed' ELSE 'processed' END, 1,
  CASE WHEN g %% 1000 = 7 THEN 'calls' WHEN g %% 100 = 3 THEN 'history' WHEN g %% 20 = 5 THEN 'smb_message_echoes' ELSE 'messages' END,
  CASE WHEN g %% 100 = 0 THEN CASE WHEN g %% 300 = 0 THEN 'invalid_json' ELSE 'handler_error' END WHEN g %% 50 = 1 THEN 'unroutable' END,
  CASE WHEN g %% 50 IN (0, 1) THEN 'entry[0].changes[0].messages[0]: failed' END,
  1, 1, 0, 0, 0, now(), now()
FROM generate_series(1, %(n)s) AS g
"""
FILL_KEYS = """
INSERT INTO whatsapp_webhook_keys (kind, value, webhook_log_id)
SELECT k.kind, k.value, g FROM generate_series(1, %(n)s) AS g, LATERAL (VALUES
  ('waba_id', (100000000000000 + g % 1000)::text),
  ('field', CASE WHEN g % 1000 = 7 THEN 'calls' WHEN g % 100 = 3 THEN 'history' WHEN g % 20 = 5 THEN 'smb_message_echoes' ELSE 'messages' END),
  ('phone_number_id', (200000000000000 + g % 2000)::text),
  ('wamid', 'wamid.B' || g),
  ('wa_id', (15550000000 + (g::bigint * 7919) % 100000)::text)
) AS k(kind, value)
UNION ALL SELECT 'user_id', 'US.' || ((g / 20) % 20000), g FROM generate_series(1, %(n)s, 20) AS g
"""
FILL_ITEMS = """
INSERT INTO whatsapp_webhook_items (webhook_log_id, position, place, result, error_kind, error, attempt)
SELECT g, 0, 'entry[0].changes[0].messages[0]', CASE WHEN g % 50 IN (0, 1) THEN 'failed' ELSE 'processed' END, NULL, NULL, 1
FROM generate_series(1, %(n)s) AS g
"""


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2), "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def fill(engine, n: int) -> dict[str, float]:
    timings = {}
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        for name, sql in (("logs", FILL), ("keys", FILL_KEYS), ("items", FILL_ITEMS)):
            started = time.perf_counter()
            raw.execute(sql.replace("%(n)s", str(n)).replace("%%", "%"))
            timings[name] = round(time.perf_counter() - started, 1)
        raw.execute(f"SELECT setval(pg_get_serial_sequence('whatsapp_webhook_logs', 'id'), {n})")
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        started = time.perf_counter()
        conn.exec_driver_sql("VACUUM ANALYZE")
        timings["vacuum_analyze"] = round(time.perf_counter() - started, 1)
    return timings


def searches(n: int, rng: random.Random):
    from datetime import timedelta

    from wa_core.db.schema import utcnow
    from wa_core.explorer.search import WebhookSearch as S

    now = utcnow()
    day = lambda: now - timedelta(days=rng.uniform(1, 29))  # noqa: E731
    return {
        "wamid": lambda: S(wamid=f"wamid.B{rng.randint(1, n)}"),
        "wa_id": lambda: S(wa_id=str(15550000000 + (rng.randint(1, n) * 7919) % 100000)),
        "user_id": lambda: S(user_id=f"US.{(rng.randint(1, n) // 20) % 20000}"),
        "phone_number_id": lambda: S(phone_number_id=str(200000000000000 + rng.randint(0, 1999))),
        "waba_id": lambda: S(waba_id=str(100000000000000 + rng.randint(0, 999))),
        "field (common: messages)": lambda: S(field="messages"),
        "field (rare: calls)": lambda: S(field="calls"),
        "status dead": lambda: S(status=("dead",)),
        "status processed": lambda: S(status=("processed",)),
        "error_kind unroutable": lambda: S(error_kind="unroutable"),
        "error_kind invalid_json": lambda: S(error_kind="invalid_json"),
        "time window 1 h": lambda: (lambda t: S(received_from=t, received_to=t + timedelta(hours=1)))(day()),
        "time window 1 day": lambda: (lambda t: S(received_from=t, received_to=t + timedelta(days=1)))(day()),
        "wa_id + 10 days": lambda: (lambda t: S(wa_id=str(15550000000 + (rng.randint(1, n) * 7919) % 100000), received_from=t - timedelta(days=10), received_to=t))(day()),
        "waba_id + status failed": lambda: S(waba_id=str(100000000000000 + rng.randint(0, 999)), status=("failed",)),
        "field calls + 1 day": lambda: (lambda t: S(field="calls", received_from=t, received_to=t + timedelta(days=1)))(day()),
        "error_kind + 1 day": lambda: (lambda t: S(error_kind="handler_error", received_from=t, received_to=t + timedelta(days=1)))(day()),
        "deep page (before_id)": lambda: S(before_id=rng.randint(1, n)),
        "field messages, deep page": lambda: S(field="messages", before_id=rng.randint(1, n)),
    }


def measure_searches(engine, n: int, repeat: int) -> dict[str, dict]:
    from wa_core.explorer.search import search_statement, search_webhooks

    rng = random.Random(13)
    out = {}
    with engine.connect() as conn:
        for name, make in searches(n, rng).items():
            samples, hits = [], []
            search_webhooks(conn, make(), 50)  # warm the plan cache and the pages touched
            for _ in range(repeat):
                query = make()
                started = time.perf_counter()
                found = search_webhooks(conn, query, 50)
                samples.append(time.perf_counter() - started)
                hits.append(len(found["webhooks"]))
            compiled = search_statement(make(), 50).compile(conn, compile_kwargs={"literal_binds": True})
            plan = conn.exec_driver_sql("EXPLAIN " + str(compiled)).scalars().all()
            out[name] = {**_ms(samples), "hits_median": statistics.median(hits), "plan": plan[0][:120],
                         "plan_nodes": [line.strip()[:100] for line in plan if "Scan" in line][:4]}
            print(f"{name:<28} {out[name]['median_ms']:>8} ms  p95 {out[name]['p95_ms']:>8} ms  hits {out[name]['hits_median']}", flush=True)
    return out


def measure_trace(engine, n: int, repeat: int) -> dict[str, float]:
    from wa_core.explorer.trace import trace_webhook

    rng = random.Random(5)
    samples = []
    with engine.connect() as conn:
        for _ in range(repeat):
            wid = rng.randint(1, n)
            started = time.perf_counter()
            assert trace_webhook(conn, wid, include_body=True) is not None
            samples.append(time.perf_counter() - started)
    return _ms(samples)


INSERT = """INSERT INTO whatsapp_webhook_logs (received_at, body, body_sha256, body_size, signature_status, request_id, waba_id, status, attempts, updated_at)
VALUES (now(), %s, %s, %s, 'valid', %s, %s, 'pending', 0, now()) RETURNING id"""


def measure_landing(url: str, inserts: int, rounds: int) -> dict[str, dict]:
    import psycopg

    bodies = [landing_row(b, None) for b in combined_bodies(200)]
    variants = {
        "as shipped (received_at index)": ("", ""),
        "without the received_at index": ("DROP INDEX ix_whatsapp_webhook_logs_received_at",
                                          "CREATE INDEX ix_whatsapp_webhook_logs_received_at ON whatsapp_webhook_logs (received_at)"),
        "GIN over a jsonb copy of the body": (
            "ALTER TABLE whatsapp_webhook_logs ADD COLUMN body_json jsonb; "
            "CREATE INDEX ix_bench_body_gin ON whatsapp_webhook_logs USING gin (body_json jsonb_path_ops)",
            "DROP INDEX ix_bench_body_gin; ALTER TABLE whatsapp_webhook_logs DROP COLUMN body_json"),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(rounds):
            for name, (setup, teardown) in variants.items():
                if setup:
                    conn.execute(setup)
                gin = "jsonb" in name
                sql = INSERT.replace("body_size,", "body_size, body_json,").replace("%s, %s, 'valid'", "%s, %s, %s::jsonb, 'valid'") if gin else INSERT
                started = time.perf_counter()
                for i in range(inserts):
                    b = bodies[i % len(bodies)]
                    args = (b["body"], b["body_sha256"], b["body_size"]) + ((b["body"].decode(),) if gin else ()) + (b["request_id"], b["waba_id"])
                    with conn.transaction():
                        conn.execute(sql, args)
                rates[name].append(inserts / (time.perf_counter() - started))
                if teardown:
                    conn.execute(teardown)
    return {name: {"inserts_per_s_median": round(statistics.median(r)), "rounds": [round(x) for x in r]} for name, r in rates.items()}


def measure_processing(rows: int, rounds: int, data_dir: Path) -> dict[str, dict]:
    import wa_core.processing.dispatch as dispatch
    import wa_core.processing.engine as engine_module
    from wa_core.processing.runner import run_processing
    from wa_core.db.schema import utcnow

    real_extract, real_write = dispatch.extract_keys, engine_module.write_explorer_rows
    off = {"with explorer writes": False, "explorer writes off": True}
    rates: dict[str, list[float]] = {name: [] for name in off}
    bodies = combined_bodies(rows, orgs=3)
    for r in range(rounds):
        for name, disabled in off.items():
            settings = bench_database("postgres", "wa_bench_explorer_proc", data_dir / f"proc{r}", orgs=3)
            engine = shipped_engine(settings)
            with engine.begin() as conn:
                insert_landed(conn, [landing_row(b, utcnow()) for b in bodies])
            dispatch.extract_keys = (lambda payload: []) if disabled else real_extract
            engine_module.write_explorer_rows = (lambda *a, **k: None) if disabled else real_write
            started = time.perf_counter()
            stats = run_processing(engine, settings, batch_size=1000, idle_exit_seconds=0)
            elapsed = time.perf_counter() - started
            assert stats.webhooks == rows, stats
            rates[name].append(rows / elapsed)
            engine.dispose()
    dispatch.extract_keys, engine_module.write_explorer_rows = real_extract, real_write
    drop_db("wa_bench_explorer_proc")
    result = {name: {"webhooks_per_s_median": round(statistics.median(v)), "rounds": [round(x) for x in v]} for name, v in rates.items()}
    result["ratio_with_to_without"] = round(statistics.median(
        [a / b for a, b in zip(rates["with explorer writes"], rates["explorer writes off"])]), 3)
    return result


FILL_READ = """
INSERT INTO organizations (id, external_id, name, created_at, updated_at) VALUES ('00000000-0000-0000-0000-0000000000aa', 'bench', 'Bench', now(), now());
INSERT INTO whatsapp_contacts (id, organization_id, wa_id, first_seen_at, last_seen_at, created_at, updated_at)
SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(g), 12, '0'))::uuid, '00000000-0000-0000-0000-0000000000aa', (15550000000 + g)::text, now(), now(), now(), now()
FROM generate_series(1, %(contacts)s) AS g;
INSERT INTO whatsapp_messages (organization_id, phone_number_id, wamid, contact_id, direction, source, type, body, raw, current_status,
    status_rank, provider_timestamp, received_at, created_at)
SELECT '00000000-0000-0000-0000-0000000000aa', '200000000000001', 'wamid.R' || g,
  ('00000000-0000-0000-0001-' || lpad(to_hex(1 + (g::bigint * 7919) %% %(contacts)s), 12, '0'))::uuid,
  CASE WHEN g %% 5 = 0 THEN 'outbound' ELSE 'inbound' END, 'cloud_api', 'text', 'hello', '{}'::jsonb,
  CASE WHEN g %% 5 = 0 THEN 'delivered' END, 0, now() - interval '60 days' * (1 - g::float / %(messages)s), now(), now()
FROM generate_series(1, %(messages)s) AS g;
ANALYZE;
"""


def measure_read(data_dir: Path, messages: int, contacts: int, repeat: int) -> dict[str, dict]:
    """The read API's queries over one organization with ``messages`` messages and ``contacts`` contacts."""
    import uuid

    from wa_core.read.conversations import list_conversations
    from wa_core.read.messages import list_messages

    settings = bench_database("postgres", "wa_bench_explorer_read", data_dir / "read")
    engine = shipped_engine(settings)
    org = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
    out: dict[str, dict] = {"messages": messages, "contacts": contacts}
    try:
        with engine.begin() as conn:
            conn.connection.driver_connection.execute(FILL_READ.replace("%(contacts)s", str(contacts)).replace("%(messages)s", str(messages)).replace("%%", "%"))
        with engine.connect() as conn:
            cursor = list_conversations(conn, org, limit=100)["next_cursor"]
            for name, call in (
                ("conversations, first page of 50", lambda: list_conversations(conn, org, limit=50)),
                ("conversations, page 3", lambda: list_conversations(conn, org, limit=50, cursor=cursor)),
                ("messages of a thread, first page", lambda: list_messages(conn, org, f"contact:00000000-0000-0000-0001-{1 + random.randint(0, contacts - 1):012x}", limit=50)),
            ):
                call()
                samples = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - started)
                out[name] = _ms(samples)
                print(f"read: {name:<34} {out[name]['median_ms']:>8} ms  p95 {out[name]['p95_ms']:>8} ms", flush=True)
    finally:
        engine.dispose()
        drop_db("wa_bench_explorer_read")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--inserts", type=int, default=2000, help="landing inserts per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--process-rows", type=int, default=3000)
    ap.add_argument("--skip", default="", help="comma list of: searches, landing, processing, read")
    ap.add_argument("--read-messages", type=int, default=200_000)
    ap.add_argument("--read-contacts", type=int, default=5_000)
    args = ap.parse_args()
    data_dir = Path("/tmp/wa_bench_explorer")
    results = {"machine": machine_info(), "rows": args.rows}
    if "read" not in args.skip:
        results["read"] = measure_read(data_dir, args.read_messages, args.read_contacts, args.repeat)
    if "searches" not in args.skip:
        settings = bench_database("postgres", "wa_bench_explorer", data_dir / "main")
        engine = shipped_engine(settings)
        try:
            results["fill_seconds"] = fill(engine, args.rows)
            print("filled", results["fill_seconds"], flush=True)
            results["searches"] = measure_searches(engine, args.rows, args.repeat)
            results["trace"] = measure_trace(engine, args.rows, args.repeat)
            print("trace", results["trace"], flush=True)
            if "landing" not in args.skip:
                results["landing"] = measure_landing(settings.database_url.replace("+psycopg", ""), args.inserts, args.rounds)
                print("landing", results["landing"], flush=True)
        finally:
            engine.dispose()
            drop_db("wa_bench_explorer")
    if "processing" not in args.skip:
        results["processing"] = measure_processing(args.process_rows, args.rounds, data_dir)
        print("processing", results["processing"], flush=True)
    print(save_results("explorer", results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
