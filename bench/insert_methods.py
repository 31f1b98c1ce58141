"""Which multi-row statement to write a batch with: ``INSERT … SELECT FROM unnest`` (arrays sent as
text or binary), psycopg's pipelined ``executemany``, or ``COPY`` into a temporary table and
``INSERT … SELECT … ON CONFLICT``. Times 1,000 ``whatsapp_messages``-shaped rows (19 columns,
raw JSON) into a scratch table with the same unique key, new rows each round, median of
``--repeat`` rounds, all methods interleaved. Bench only; writes bench/results/insert-methods-*.json.

    .venv/bin/python bench/insert_methods.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from datetime import datetime, timezone

import psycopg
from _common import drop_db, fresh_db, machine_info, save_results

DB = "wa_bench_insert_methods"
COLUMNS = [("organization_id", "uuid"), ("phone_number_id", "text"), ("wamid", "text"), ("contact_id", "uuid"), ("direction", "text"),
           ("source", "text"), ("type", "text"), ("body", "text"), ("context_wamid", "text"), ("group_id", "text"), ("raw", "jsonb"),
           ("error_code", "integer"), ("error_title", "text"), ("current_status", "text"), ("status_rank", "smallint"),
           ("provider_timestamp", "timestamptz"), ("received_at", "timestamptz"), ("webhook_log_id", "bigint"), ("created_at", "timestamptz")]
NAMES = ", ".join(n for n, _ in COLUMNS)


def rows(round_: int, n: int) -> list[tuple]:
    org, now = uuid.uuid4(), datetime.now(timezone.utc)
    out = []
    for i in range(n):
        wamid = f"wamid.BENCH{round_:04d}{i:08d}"
        raw = json.dumps({"from": "15552000123", "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": "Olá! Vocês abrem hoje?"}})
        out.append((org, "200000000001101", wamid, uuid.uuid4(), "inbound", "cloud_api", "text", "Olá! Vocês abrem hoje?", None, None, raw,
                    None, None, None, 0, now, now, i, now))
    return out


def unnest(conn, data, fmt: str) -> None:
    arrays = ", ".join(f"%({n}){fmt}::{'text' if t == 'jsonb' else t}[]" for n, t in COLUMNS)
    select = ", ".join(f"v.{n}::jsonb" if t == "jsonb" else f"v.{n}" for n, t in COLUMNS)
    params = {n: [r[i] for r in data] for i, (n, _) in enumerate(COLUMNS)}
    conn.execute(f"INSERT INTO m ({NAMES}) SELECT {select} FROM unnest({arrays}) AS v({NAMES}) ON CONFLICT (phone_number_id, wamid) DO NOTHING", params)


def executemany(conn, data) -> None:
    marks = ", ".join("%s::jsonb" if t == "jsonb" else "%s" for _, t in COLUMNS)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO m ({NAMES}) VALUES ({marks}) ON CONFLICT (phone_number_id, wamid) DO NOTHING", data)


def copy(conn, data) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS m_in (LIKE m INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    with conn.cursor().copy(f"COPY m_in ({NAMES}) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types([t for _, t in COLUMNS])
        for row in data:
            cp.write_row(row)
    conn.execute(f"INSERT INTO m ({NAMES}) SELECT {NAMES} FROM m_in ON CONFLICT (phone_number_id, wamid) DO NOTHING")


METHODS = {"unnest_binary": lambda c, d: unnest(c, d, "b"), "unnest_text": lambda c, d: unnest(c, d, "s"),
           "executemany": executemany, "copy_temp_table": copy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    url = fresh_db(DB)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    load = os.getloadavg()
    try:
        with psycopg.connect(url) as conn:
            conn.execute("SET synchronous_commit TO OFF")
            conn.execute("CREATE TABLE m (id bigserial PRIMARY KEY, organization_id uuid NOT NULL, phone_number_id varchar(64) NOT NULL,"
                         " wamid varchar(255) NOT NULL, contact_id uuid, direction varchar(16) NOT NULL, source varchar(32) NOT NULL,"
                         " type varchar(64) NOT NULL, body text, context_wamid varchar(255), group_id varchar(255), raw jsonb NOT NULL,"
                         " error_code integer, error_title text, current_status varchar(16), status_rank smallint NOT NULL,"
                         " provider_timestamp timestamptz, received_at timestamptz NOT NULL, webhook_log_id bigint, created_at timestamptz NOT NULL,"
                         " UNIQUE (phone_number_id, wamid))")
            conn.execute("CREATE INDEX ON m (wamid)")
            conn.execute("CREATE INDEX ON m (organization_id, received_at)")
            conn.execute("CREATE INDEX ON m (contact_id)")
            conn.commit()
            round_ = 0
            for _ in range(args.repeat):
                for name, method in METHODS.items():
                    round_ += 1
                    data = rows(round_, args.rows)
                    t0 = time.perf_counter()
                    method(conn, data)
                    conn.commit()
                    times[name].append(time.perf_counter() - t0)
    finally:
        drop_db(DB)
    summary = {m: {"median_ms": 1000 * statistics.median(t), "min_ms": 1000 * min(t), "max_ms": 1000 * max(t)} for m, t in times.items()}
    for m, s in summary.items():
        print(f"{m:16} {s['median_ms']:7.1f} ms per {args.rows} rows  [{s['min_ms']:.1f}-{s['max_ms']:.1f}]")
    print(f"results: {save_results('insert-methods', {'machine': machine_info(), 'args': vars(args), 'loadavg_before': load, 'loadavg_after': os.getloadavg(), 'summary': summary, 'times': times})}")


if __name__ == "__main__":
    main()
