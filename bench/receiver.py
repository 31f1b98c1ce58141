"""Receiver throughput and latency: the real receiver vs a bare FastAPI endpoint, with wrk.

For each repetition, each target, each uvicorn worker count and each concurrency level:
start the server (fresh process), warm up, run ``wrk`` for a fixed duration, record
requests/s, p50/p90/p99 latency and the CPU seconds used by the server processes, Postgres
and wrk; for the real receiver, compare the rows landed with the 200 answers.

Targets (all served by uvicorn with the receiver's settings: 127.0.0.1, log level warning,
no access log, proxy headers, default loop/http = uvloop + httptools):

- ``bare``     ``bench/apps.py:bare_app``: POST answers 200 without reading the body;
- ``nodb``     the real receiver app with a no-op landing store (body, HMAC, no INSERT);
- ``receiver`` ``wa-onboarding serve``: the real receiver on Postgres (asyncpg pool); after
  each landing it sends the coalesced ``NOTIFY wa_webhook_landed`` (the default);
- ``nonotify`` the same receiver with ``LANDING_NOTIFY=false``: the plain INSERT, for the
  cost of the notification (list it next to ``receiver``: the matrix is interleaved);
- ``nogroup``  the same receiver with ``LANDING_BATCH_MAX_ROWS=1``: one row per commit, for
  what the group commit brings (the receiver's rows per commit are read from its ``/metrics``);
- ``minimalguard`` the same minimal app served with the receiver's HTTP protocol
  (``wa_webhook.http_guard.RequestTimeoutProtocol``: header and body deadlines, head size
  bound): what the protocol costs on its own;
- ``minimal``  ``bench/apps.py:minimal_app``: the minimal durable receiver of issue 14 (raw
  ASGI: body, HMAC, the same asyncpg INSERT of the same row, 200); every other target is
  compared with it per repetition (req/s and p99 ratios, server CPU per 200), rows checked.

Insert check (``--insert-check``): raw landing inserts/s straight into Postgres with asyncpg
(32 connections, no HTTP) for three notification designs, interleaved: the plain INSERT,
``pg_notify`` in the INSERT's own transaction, and the receiver's coalesced post-commit
notification. It shows why the receiver does not notify inside the landing's transaction.

Bodies: ``--bodies`` distinct 1-2 KB bodies (three ``SyntheticStream`` entries per body),
each signed correctly with the app secret; wrk rotates through them.

Row check: wrk stops at the end of its duration without waiting for requests in flight,
and the server still lands those, so after each wrk run ``rows - 200s`` must lie in
[0, connections]. An exact check follows at the end: a Python client sends a fixed number
of signed bodies (plus some badly signed ones) and every 200 must match exactly one row
with the same SHA-256, and no 401 may leave a row.

Usage (about 6 minutes with the defaults):
    .venv/bin/python bench/receiver.py
    .venv/bin/python bench/receiver.py --duration 5 --repeat 1 --targets bare,receiver  # quick
    .venv/bin/python bench/receiver.py --targets minimal,receiver --workers 1 --concurrency 16,32 \
        --duration 5 --repeat 2 --insert-check 0   # issue 14's bar
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import (
    BENCH_DIR,
    BENCH_SECRET,
    BENCH_TOKEN_KEY,
    PROJECT_ROOT,
    RESULTS_DIR,
    VENV_BIN,
    combined_bodies,
    cpu_snapshot,
    drop_db,
    free_port,
    fresh_db,
    machine_info,
    save_results,
    stop_group,
    wait_http,
)

import psycopg

DB_NAME = "wa_bench_receiver"
LOG_DIR = Path("/tmp/wa_bench_receiver")
PATH = "/api/v1/whatsapp/webhook"


#: targets that are the real receiver (readiness on /readyz, rows checked)
RECEIVERS = ("receiver", "nonotify", "nogroup")
#: targets whose rows are checked against their 200 answers
DURABLE = RECEIVERS + ("minimal", "minimalguard")


def server_env(env: dict[str, str], target: str) -> dict[str, str]:
    """The server's environment: ``nonotify`` turns the landing notification off, ``nogroup``
    the group commit (one row per commit)."""
    if target == "nonotify":
        return dict(env, LANDING_NOTIFY="false")
    if target == "nogroup":
        return dict(env, LANDING_NOTIFY="true", LANDING_BATCH_MAX_ROWS="1")
    return dict(env, LANDING_NOTIFY="true")


def server_cmd(target: str, port: int, workers: int) -> list[str]:
    if target in RECEIVERS:
        return [str(VENV_BIN / "wa-onboarding"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    if target == "minimalguard":  # the reference served with the receiver's protocol: what the deadlines cost
        code = (
            "import uvicorn; from wa_webhook.http_guard import RequestTimeoutProtocol; "
            f"uvicorn.run('bench.apps:minimal_app', factory=True, app_dir={str(PROJECT_ROOT)!r}, host='127.0.0.1', port={port}, "
            f"workers={workers}, log_level='warning', access_log=False, proxy_headers=True, ws='none', http=RequestTimeoutProtocol)"
        )
        return [sys.executable, "-c", code]
    factory = {"bare": "bench.apps:bare_app", "nodb": "bench.apps:receiver_nodb_app", "minimal": "bench.apps:minimal_app"}[target]
    # the same uvicorn options as `wa-onboarding serve` (wa_webhook/cli.py cmd_serve)
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--app-dir", str(PROJECT_ROOT),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log", "--proxy-headers", "--ws", "none",
    ]


def landing_commits(port: int) -> tuple[float, float] | None:
    """(rows, commits) so far from the receiver's ``wa_webhook_landing_batch_rows`` histogram
    (sum, count) on ``/metrics``; ``None`` for a server without it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith("wa_webhook_landing_batch_rows_sum ") or line.startswith("wa_webhook_landing_batch_rows_count "):
            name, value = line.split()
            values[name.rsplit("_", 1)[1]] = float(value)
    return (values["sum"], values["count"]) if len(values) == 2 else None


def minimal_ratios(results: list[dict], target: str = "receiver") -> list[dict]:
    """``target`` against ``minimal`` (the minimal durable receiver) for each (workers,
    concurrency), paired per repetition: req/s ratio, p99 ratio and server CPU ms per 200, with
    issue 14's bar (req/s >= 0.85x and p99 <= 1.5x the reference, on the medians)."""
    out = []
    for w, c in sorted({(r["workers"], r["concurrency"]) for r in results}):
        rps, p99, cpu = [], [], {target: [], "minimal": []}
        pg = {target: [], "minimal": []}
        for rep in sorted({r["rep"] for r in results}):
            pair = {r["target"]: r for r in results if (r["workers"], r["concurrency"], r["rep"]) == (w, c, rep)}
            if target in pair and "minimal" in pair and pair["minimal"]["rps"]:
                rps.append(pair[target]["rps"] / pair["minimal"]["rps"])
                p99.append(pair[target]["p99_ms"] / pair["minimal"]["p99_ms"])
                for t in cpu:
                    cpu[t].append(1000 * pair[t]["cpu_server_s"] / max(1, pair[t]["ok"]))
                    pg[t].append(1000 * pair[t]["cpu_postgres_s"] / max(1, pair[t]["ok"]))
        if rps:
            med = {"rps": statistics.median(rps), "p99": statistics.median(p99)}
            out.append({"target": target, "workers": w, "concurrency": c, "rps_ratios": rps, "p99_ratios": p99,
                        "rps_ratio_median": med["rps"], "p99_ratio_median": med["p99"],
                        "server_cpu_ms_per_request": {t: statistics.median(v) for t, v in cpu.items()},
                        "postgres_cpu_ms_per_request": {t: statistics.median(v) for t, v in pg.items()},
                        "meets_bar": med["rps"] >= 0.85 and med["p99"] <= 1.5})
    return out


def notify_ratios(results: list[dict]) -> list[dict]:
    """``receiver`` over ``nonotify`` for each (workers, concurrency), paired per repetition:
    req/s, and the server's CPU ms per accepted request (steadier than req/s on a shared
    machine: it does not move with the CPU other processes take)."""
    out = []
    for w, c in sorted({(r["workers"], r["concurrency"]) for r in results}):
        ratios, cpu = [], {"receiver": [], "nonotify": []}
        for rep in sorted({r["rep"] for r in results}):
            pair = {r["target"]: r for r in results if (r["workers"], r["concurrency"], r["rep"]) == (w, c, rep)}
            if "receiver" in pair and "nonotify" in pair and pair["nonotify"]["rps"]:
                ratios.append(pair["receiver"]["rps"] / pair["nonotify"]["rps"])
                for t in cpu:
                    cpu[t].append(1000 * pair[t]["cpu_server_s"] / max(1, pair[t]["ok"]))
                    pg[t].append(1000 * pair[t]["cpu_postgres_s"] / max(1, pair[t]["ok"]))
        if ratios:
            ms = {t: statistics.median(v) for t, v in cpu.items()}
            out.append({"workers": w, "concurrency": c, "ratios": ratios, "median": statistics.median(ratios),
                        "server_cpu_ms_per_request": ms, "cpu_ratio": ms["receiver"] / ms["nonotify"]})
    return out


async def _insert_rate(url: str, mode: str, n: int, conc: int) -> float:
    """Landing inserts per second straight into Postgres (asyncpg, ``conc`` connections, no HTTP):
    ``plain`` (the receiver's INSERT), ``same_txn`` (``pg_notify`` inside the INSERT's statement,
    the design not taken) or ``coalesced`` (the INSERT, then the receiver's coalesced
    post-commit notification, :class:`wa_core.db.landing.LandingAnnouncer`)."""
    from datetime import datetime, timezone

    import asyncpg

    from wa_core.db.landing import _PG_INSERT, LandingAnnouncer
    from wa_core.processing.wake import LANDED_CHANNEL

    sql = _PG_INSERT
    if mode == "same_txn":
        sql = f"WITH landed AS ({_PG_INSERT.strip()}) SELECT id, pg_notify('{LANDED_CHANNEL}', '') FROM landed"
    pool = await asyncpg.create_pool(url, min_size=conc, max_size=conc)
    announcer = LandingAnnouncer(url, 5.0) if mode == "coalesced" else None
    body = combined_bodies(1)[0]

    async def worker() -> None:
        async with pool.acquire() as conn:
            for _ in range(n // conc):
                await conn.fetchval(sql, datetime.now(timezone.utc), body, "0" * 64, len(body), "valid", "bench", "100000000000001")
                if announcer:
                    announcer.announce()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    rate = n / (time.monotonic() - t0)
    if announcer:
        await announcer.close()
    await pool.close()
    return rate


def insert_check(url: str, n: int, repeat: int, conc: int = 32) -> dict:
    """Raw landing inserts/s per notification design, interleaved (order reversed every other
    repetition), with the ratio to ``plain`` per repetition."""
    modes = ["plain", "same_txn", "coalesced"]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for rep in range(repeat):
        for mode in modes if rep % 2 == 0 else modes[::-1]:
            truncate(url)
            rates[mode].append(asyncio.run(_insert_rate(url, mode, n, conc)))
    ratios = {m: [r / p for r, p in zip(rates[m], rates["plain"])] for m in modes[1:]}
    out = {"inserts": n, "connections": conc, "rates": rates, "median": {m: statistics.median(v) for m, v in rates.items()},
           "ratio_to_plain_median": {m: statistics.median(v) for m, v in ratios.items()}, "ratios": ratios}
    print(f"raw landing inserts/s ({conc} connections, {n} per run, medians of {repeat}): "
          + ", ".join(f"{m} {v:.0f}" for m, v in out["median"].items())
          + "; vs plain: " + ", ".join(f"{m} {v:.3f}" for m, v in out["ratio_to_plain_median"].items()), flush=True)
    return out


def run_wrk(url: str, bodies_file: Path, connections: int, duration: float, threads: int) -> dict:
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "30s",
        "-s", str(BENCH_DIR / "wrk_webhook.lua"), url, "--", str(bodies_file),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(l for l in out.splitlines() if l.startswith("WRKJSON "))
    data = json.loads(line[len("WRKJSON "):])
    data["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return data


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM whatsapp_webhook_logs").fetchone()[0]


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE whatsapp_webhook_logs RESTART IDENTITY CASCADE")


def stray_hashes(url: str, known: set[str]) -> int:
    with psycopg.connect(url) as conn:
        hashes = {r[0] for r in conn.execute("SELECT DISTINCT body_sha256 FROM whatsapp_webhook_logs")}
    return len(hashes - known)


async def exact_check(url: str, bodies: list[bytes], bad: int, concurrency: int) -> dict:
    """Send every body once, signed, and ``bad`` bodies with a wrong signature; count answers."""
    import httpx

    from wa_core.meta.signature import sign

    ok_hashes: list[str] = []
    statuses: dict[int, int] = {}
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(body: bytes, good: bool) -> None:
            sig = sign(body, BENCH_SECRET if good else "wrong_secret")
            async with sem:
                try:
                    r = await client.post(url, content=body, headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                ok_hashes.append(hashlib.sha256(body).hexdigest())

        tasks = [one(b, True) for b in bodies] + [one(b + b" ", False) for b in bodies[:bad]]
        await asyncio.gather(*tasks)
    return {"statuses": statuses, "ok_hashes": ok_hashes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="bare,nodb,receiver")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up before each run")
    ap.add_argument("--repeat", type=int, default=2, help="repetitions of the whole matrix (interleaved)")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (1 leaves the most CPU to the server)")
    ap.add_argument("--bodies", type=int, default=500, help="distinct signed bodies wrk rotates through")
    ap.add_argument("--exact", type=int, default=2000, help="bodies sent by the exact row check (0 = skip)")
    ap.add_argument("--insert-check", type=int, default=6000, help="raw inserts per run of the notification designs check (0 = skip)")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()

    targets = args.targets.split(",")
    workers_list = [int(w) for w in args.workers.split(",")]
    conc_list = [int(c) for c in args.concurrency.split(",")]

    from wa_core.db.migrate import upgrade
    from wa_core.meta.signature import sign

    from _common import make_settings

    db = fresh_db(DB_NAME)
    upgrade(make_settings(db, Path("/tmp/wa_bench_receiver")))
    bodies = combined_bodies(args.bodies)
    sizes = [len(b) for b in bodies]
    known = {hashlib.sha256(b).hexdigest() for b in bodies}
    RESULTS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    bodies_file = RESULTS_DIR / "wrk_bodies.tmp"
    bodies_file.write_text("".join(f"{sign(b, BENCH_SECRET)} {b.decode('ascii')}\n" for b in bodies))

    env = dict(os.environ, DATABASE_URL=db, META_APP_SECRET=BENCH_SECRET, TOKEN_ENCRYPTION_KEY=BENCH_TOKEN_KEY, WA_DATA_DIR="/tmp/wa_bench_receiver")
    env.pop("REDIS_URL", None)
    results: list[dict] = []
    problems: list[str] = []
    print(f"bodies: {len(bodies)} distinct, {min(sizes)}-{max(sizes)} bytes (median {statistics.median(sizes):.0f})")
    print(f"{'target':9} {'w':>2} {'c':>3} {'rep':>3} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'non200':>6} {'rows-200':>8}  cpu cores: server/pg/wrk/other")
    try:
        for rep in range(args.repeat):
            # odd repetitions run the targets in reverse order, so a drift in machine load
            # weighs on every target alike
            for target in targets if rep % 2 == 0 else targets[::-1]:
                for workers in workers_list:
                    port = free_port()
                    log_path = LOG_DIR / f"{target}-w{workers}.log"
                    log_file = open(log_path, "wb")
                    proc = subprocess.Popen(server_cmd(target, port, workers), cwd=PROJECT_ROOT, env=server_env(env, target),
                                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
                    try:
                        wait_http(f"http://127.0.0.1:{port}/readyz" if target in RECEIVERS else f"http://127.0.0.1:{port}/", 60, proc)
                        url = f"http://127.0.0.1:{port}{PATH}"
                        for conc in conc_list:
                            if args.warmup > 0:
                                run_wrk(url, bodies_file, conc, args.warmup, args.threads)
                            if target in DURABLE:
                                time.sleep(0.5)
                                truncate(db)
                            commits0 = landing_commits(port) if target in RECEIVERS else None
                            cpu0 = cpu_snapshot([proc.pid])
                            w = run_wrk(url, bodies_file, conc, args.duration, args.threads)
                            cpu1 = cpu_snapshot([proc.pid])
                            commits1 = landing_commits(port) if commits0 else None
                            secs = w["duration_us"] / 1e6
                            non200 = w["err_status"]
                            ok = w["requests"] - non200
                            row = {
                                "target": target, "workers": workers, "concurrency": conc, "rep": rep,
                                "requests": w["requests"], "ok": ok, "non200": non200,
                                "socket_errors": w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
                                "rps": ok / secs, "p50_ms": w["lat_p50_us"] / 1000, "p90_ms": w["lat_p90_us"] / 1000,
                                "p99_ms": w["lat_p99_us"] / 1000, "max_ms": w["lat_max_us"] / 1000, "seconds": secs,
                                "cpu_server_s": cpu1["server"] - cpu0["server"], "cpu_postgres_s": cpu1["postgres"] - cpu0["postgres"],
                                "cpu_wrk_s": w["wrk_cpu_s"],
                                "cpu_machine_s": cpu1["machine"] - cpu0["machine"], "loadavg1": os.getloadavg()[0],
                            }
                            if commits0 and commits1 and commits1[1] > commits0[1]:  # group commit: rows per landing commit
                                row["rows_per_commit"] = (commits1[0] - commits0[0]) / (commits1[1] - commits0[1])
                            # CPU used by anything else on the machine (other users' jobs), in cores
                            row["other_cores"] = max(0.0, row["cpu_machine_s"] - row["cpu_server_s"] - row["cpu_postgres_s"] - row["cpu_wrk_s"]) / secs
                            if target in DURABLE:
                                time.sleep(1.0)  # let requests abandoned by wrk at its deadline finish landing
                                rows = count_rows(db)
                                row["rows"] = rows
                                row["rows_minus_ok"] = rows - ok
                                row["stray_bodies"] = stray_hashes(db, known)
                                if not (0 <= rows - ok <= conc) or row["stray_bodies"]:
                                    problems.append(f"{target} w={workers} c={conc} rep={rep}: rows {rows} vs 200s {ok}, stray {row['stray_bodies']}")
                            if non200 or row["socket_errors"]:
                                problems.append(f"{target} w={workers} c={conc} rep={rep}: {non200} non-200, {row['socket_errors']} socket errors")
                            results.append(row)
                            print(f"{target:9} {workers:>2} {conc:>3} {rep:>3} {row['rps']:>8.0f} {row['p50_ms']:>7.1f} {row['p90_ms']:>7.1f} "
                                  f"{row['p99_ms']:>7.1f} {non200:>6} {str(row.get('rows_minus_ok', '-')):>8}  "
                                  f"{row['cpu_server_s'] / secs:.2f}/{row['cpu_postgres_s'] / secs:.2f}/{row['cpu_wrk_s'] / secs:.2f}/{row['other_cores']:.2f}"
                                  + (f"  rows/commit {row['rows_per_commit']:.1f}" if "rows_per_commit" in row else ""), flush=True)
                    finally:
                        stop_group(proc)
                        log_file.close()
                        err = log_path.read_text(errors="replace")
                        if "Traceback" in err or "ERROR" in err:
                            problems.append(f"{target} w={workers} server stderr: {err[-800:]}")

        inserts = insert_check(db, args.insert_check, max(2, args.repeat)) if args.insert_check else None

        exact = None
        if args.exact and "receiver" in targets:
            exact_bodies = combined_bodies(args.exact, seed=99)
            port = free_port()
            proc = subprocess.Popen(server_cmd("receiver", port, 1), cwd=PROJECT_ROOT, env=server_env(env, "receiver"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
                truncate(db)
                res = asyncio.run(exact_check(f"http://127.0.0.1:{port}{PATH}", exact_bodies, bad=100, concurrency=16))
            finally:
                stop_group(proc)
            with psycopg.connect(db) as conn:
                landed = [r[0] for r in conn.execute("SELECT body_sha256 FROM whatsapp_webhook_logs")]
            exact = {
                "sent_signed": len(exact_bodies), "sent_bad_signature": 100, "statuses": res["statuses"],
                "rows": len(landed), "ok": len(res["ok_hashes"]),
                "rows_equal_200s": len(landed) == len(res["ok_hashes"]),
                "hashes_match": sorted(landed) == sorted(res["ok_hashes"]),
            }
            print(f"exact check: {exact}")
            if not (exact["rows_equal_200s"] and exact["hashes_match"] and res["statuses"].get(401) == 100):
                problems.append(f"exact check failed: {exact}")
    finally:
        bodies_file.unlink(missing_ok=True)
        if not args.keep_db:
            drop_db(DB_NAME)

    # medians over repetitions
    summary = []
    keys = sorted({(r["target"], r["workers"], r["concurrency"]) for r in results}, key=lambda k: (targets.index(k[0]), k[1], k[2]))
    print("\nmedian over repetitions:")
    print(f"{'target':9} {'w':>2} {'c':>3} {'req/s':>8} {'[min-max]':>13} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} {'max other cores':>15}")
    for key in keys:
        runs = [r for r in results if (r["target"], r["workers"], r["concurrency"]) == key]
        med = lambda f: statistics.median(r[f] for r in runs)  # noqa: E731
        s = {"target": key[0], "workers": key[1], "concurrency": key[2], "runs": len(runs),
             "rps": med("rps"), "rps_min": min(r["rps"] for r in runs), "rps_max": max(r["rps"] for r in runs),
             "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
             "cpu_server_s": med("cpu_server_s"), "cpu_postgres_s": med("cpu_postgres_s"), "cpu_wrk_s": med("cpu_wrk_s"),
             "other_cores_max": max(r["other_cores"] for r in runs)}
        summary.append(s)
    for s in summary:
        bare = next((b for b in summary if b["target"] == "bare" and b["workers"] == s["workers"] and b["concurrency"] == s["concurrency"]), None)
        s["ratio_vs_bare"] = s["rps"] / bare["rps"] if bare else None
        ratio = f"{s['ratio_vs_bare']:.2f}" if s["ratio_vs_bare"] else "-"
        print(f"{s['target']:9} {s['workers']:>2} {s['concurrency']:>3} {s['rps']:>8.0f} {s['rps_min']:>6.0f}-{s['rps_max']:<6.0f} "
              f"{s['p50_ms']:>7.1f} {s['p99_ms']:>7.1f} {ratio:>7} {s['other_cores_max']:>15.2f}")

    vs_minimal = [m for t in targets if t != "minimal" for m in minimal_ratios(results, t)]
    if vs_minimal:
        print("\nvs the minimal durable receiver, per repetition (bar: req/s >= 0.85x, p99 <= 1.5x):")
        for m in vs_minimal:
            cpu = m["server_cpu_ms_per_request"]
            print(f"  {m['target']:9} w={m['workers']} c={m['concurrency']}: req/s {', '.join(f'{r:.2f}' for r in m['rps_ratios'])} "
                  f"(median {m['rps_ratio_median']:.2f}x), p99 {', '.join(f'{r:.2f}' for r in m['p99_ratios'])} (median "
                  f"{m['p99_ratio_median']:.2f}x); server CPU/200 {cpu[m['target']]:.3f} vs {cpu['minimal']:.3f} ms, "
                  f"Postgres CPU/200 {m['postgres_cpu_ms_per_request'][m['target']]:.3f} vs {m['postgres_cpu_ms_per_request']['minimal']:.3f} ms"
                  f"{'' if m['meets_bar'] else '  BELOW BAR'}")

    notify_cost = notify_ratios(results)
    if notify_cost:
        print("\nreceiver (NOTIFY) / nonotify req/s, per repetition (same rep = adjacent runs):")
        for c in notify_cost:
            print(f"  w={c['workers']} c={c['concurrency']}: {', '.join(f'{r:.3f}' for r in c['ratios'])} (median {c['median']:.3f}); "
                  f"server CPU per request {c['server_cpu_ms_per_request']['receiver']:.3f} vs {c['server_cpu_ms_per_request']['nonotify']:.3f} ms "
                  f"(x{c['cpu_ratio']:.3f})")

    path = save_results("receiver", {"machine": machine_info(), "loadavg": os.getloadavg(), "args": vars(args),
                                     "body_sizes": [min(sizes), statistics.median(sizes), max(sizes)],
                                     "runs": results, "summary": summary, "notify_cost": notify_cost, "vs_minimal": vs_minimal, "insert_check": inserts,
                                     "exact_check": exact, "problems": problems})
    print(f"\nresults: {path}")
    for p in problems:
        print(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
