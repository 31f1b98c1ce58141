"""Memory and time to process one ~3 MB coexistence ``history`` webhook (the largest body Meta sends).

Lands one body of about 3 MB (thousands of history messages) in a fresh database, then
processes it with ``run_processing`` in a fresh child process and reports that process's peak
RSS, the Python heap peak (tracemalloc) of the processing call alone, the time, and the
number of commits. Run:

    .venv/bin/python bench/history_memory.py                # embedded SQLite
    .venv/bin/python bench/history_memory.py --postgres     # a throwaway Postgres database (wa_bench_history)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DB_NAME = "wa_bench_history"

CHILD = r"""
import json, resource, sys, time, tracemalloc
import sqlalchemy as sa
from wa_core.settings import Settings
from wa_core.db.engine import create_processing_engine
from wa_core.processing.runner import run_processing
settings = Settings(**json.loads(sys.argv[1]))
engine = create_processing_engine(settings)
commits = []
sa.event.listen(engine, "commit", lambda conn: commits.append(1))
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
started = time.perf_counter()
stats = run_processing(engine, settings, idle_exit_seconds=0)
seconds = time.perf_counter() - started
_, heap_peak = tracemalloc.get_traced_memory()
print(json.dumps({
    "seconds": round(seconds, 2), "items": stats.items_processed, "status": dict(stats.by_status),
    "heap_peak_mib": round(heap_peak / 2**20, 1), "rss_before_mib": round(rss_before / 1024, 1),
    "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "commits": len(commits),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--bytes", type=int, default=3_000_000)
    args = parser.parse_args()
    from _common import bench_database, drop_db
    from tests.helpers import bind_fixture_numbers, land
    from tests.pipelines.test_delivery import big_history
    from wa_core.db.engine import create_sync_engine

    data_dir = Path(tempfile.mkdtemp(prefix="wa_bench_history_"))
    settings = bench_database("postgres" if args.postgres else "sqlite", DB_NAME, data_dir)
    fields = {"data_dir": str(data_dir), "database_url": settings.database_url}
    engine = create_sync_engine(settings)
    bind_fixture_numbers(engine)
    body = big_history(args.bytes)
    land(engine, body)
    engine.dispose()
    messages = sum(len(t["messages"]) for t in json.loads(body)["entry"][0]["changes"][0]["value"]["history"][0]["threads"])
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(fields)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update({"backend": "postgres" if args.postgres else "sqlite", "body_bytes": len(body), "messages": messages})
    print(json.dumps(result, indent=2))
    if args.postgres:
        drop_db(DB_NAME)


if __name__ == "__main__":
    main()
