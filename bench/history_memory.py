"""Memory and time to process one ~3 MB coexistence ``history`` webhook (the largest body Meta sends).

Lands one body of about 3 MB in a fresh database, then applies it in a fresh child process
with ``process_batch`` (the set-based engine) and reports the time, that process's resident
memory before the batch and at its peak (RSS growth = peak − before), the number of commits
and, with ``--heap``, the Python heap peak (tracemalloc, which slows the run). Memory is read from
``/proc/self/status`` (``VmRSS``, and ``VmHWM`` reset just before the batch). Two shapes of body, both about
3 MB: ``long`` (50-message threads of 230-character texts, ~6,500 messages, the body of
``tests/pipelines/test_delivery.py``) and ``short`` (one-line texts, ~14,000 messages).
Records ``os.getloadavg()``; writes ``bench/results/history-*.json``. Run:

    .venv/bin/python bench/history_memory.py --postgres          # a throwaway Postgres database
    .venv/bin/python bench/history_memory.py                     # embedded SQLite
    .venv/bin/python bench/history_memory.py --postgres --shapes short --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, logging, sys, time, tracemalloc
import sqlalchemy as sa
logging.basicConfig(level=logging.ERROR)
from wa_core.settings import Settings
from wa_core.db.engine import create_processing_engine
from wa_core.processing.runner import process_batch
def status_mib(key):  # VmRSS (now) or VmHWM (peak since the last reset) of this process
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
engine = create_processing_engine(settings)
commits = []
sa.event.listen(engine, "commit", lambda conn: commits.append(1))
with engine.connect() as conn:  # connect and warm up before measuring
    conn.execute(sa.text("SELECT 1"))
peak_before = status_mib("VmHWM")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS (ru_maxrss would carry the parent's peak across fork)
rss_before = status_mib("VmRSS")
heap = sys.argv[2] == "heap"
if heap:
    tracemalloc.start()  # slows Python down about twice: the time of a --heap run is not the figure
started = time.perf_counter()
outcomes = process_batch(engine, settings)
seconds = time.perf_counter() - started
heap_peak = tracemalloc.get_traced_memory()[1] if heap else 0
peak = status_mib("VmHWM")
print(json.dumps({
    "seconds": round(seconds, 2), "items_processed": sum(o.items_processed for o in outcomes), "status": [o.status for o in outcomes],
    "heap_peak_mib": round(heap_peak / 2**20, 1) if heap else None, "rss_before_mib": round(rss_before, 1), "rss_peak_mib": round(peak, 1),
    "rss_growth_mib": round(peak - rss_before, 1), "peak_before_batch_mib": round(peak_before, 1), "commits": len(commits),
}))
"""


def history_body(target_bytes: int, shape: str) -> bytes:
    """A signed-looking ``history`` webhook body of at most ``target_bytes`` for the Acme number."""
    from tests.core.test_processing import acme_value, body_with
    from tests.pipelines.test_delivery import big_history

    if shape == "long":
        return big_history(target_bytes)
    per_message = 214  # a compact history message of a one-line text
    count = target_bytes // per_message
    while True:
        threads = []
        for t in range(0, count, 50):
            peer = f"1555{7000000 + t // 50:07d}"
            threads.append({"id": peer, "messages": [
                {"from": peer, "id": f"wamid.HIST{n:08d}", "timestamp": "1763769600", "type": "text", "text": {"body": "ok, até amanhã às 10h, obrigado"},
                 "history_context": {"status": "READ"}} for n in range(t, min(t + 50, count))]})
        value = acme_value(history=[{"metadata": {"phase": 1, "chunk_order": 1, "progress": 100}, "threads": threads}])
        body = body_with(value, field="history")
        if len(body) <= target_bytes:
            return body
        count -= max(1, (len(body) - target_bytes) // per_message + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--bytes", type=int, default=3_000_000)
    parser.add_argument("--shapes", default="long,short")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--heap", action="store_true", help="also the Python heap peak (tracemalloc; the time is then not the figure)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "bench"))
    from _common import machine_info, save_results
    from tests.helpers import bind_fixture_numbers, land
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import upgrade
    from wa_core.settings import Settings

    results = []
    for rep in range(args.repeat):
        for shape in args.shapes.split(","):
            data_dir = Path(tempfile.mkdtemp(prefix="wa_bench_history_"))
            fields = {"data_dir": str(data_dir), "database_url": None}
            if args.postgres:
                import psycopg

                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                    conn.execute("DROP DATABASE IF EXISTS wa_bench_history WITH (FORCE)")
                    conn.execute("CREATE DATABASE wa_bench_history")
                fields["database_url"] = "postgresql://postgres@127.0.0.1:5432/wa_bench_history"
            settings = Settings(_env_file=None, **fields)
            upgrade(settings)
            engine = create_sync_engine(settings)
            bind_fixture_numbers(engine)
            body = history_body(args.bytes, shape)
            land(engine, body)
            engine.dispose()
            messages = sum(len(t["messages"]) for t in json.loads(body)["entry"][0]["changes"][0]["value"]["history"][0]["threads"])
            load = os.getloadavg()
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(fields), "heap" if args.heap else "time"], capture_output=True, text=True, check=True, cwd=root,
                                 env={**os.environ, "PYTHONPATH": str(root)})
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update({"rep": rep, "shape": shape, "backend": "postgres" if args.postgres else "sqlite", "body_bytes": len(body),
                           "messages": messages, "loadavg_before": load, "loadavg_after": os.getloadavg()})
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.postgres:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS wa_bench_history WITH (FORCE)")
    print(f"results: {save_results('history', {'machine': machine_info(), 'args': vars(args), 'runs': results})}")


if __name__ == "__main__":
    main()
