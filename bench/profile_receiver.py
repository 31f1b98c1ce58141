"""Where the receiver's CPU goes per signed delivery: the ASGI app driven in-process (no HTTP
server, no sockets) under cProfile, next to the minimal durable receiver (``bench/apps.py``).

Both apps get the same signed bodies through the ASGI interface at a fixed concurrency and land
them in a fresh Postgres database; the output is the CPU per request of each app and the top
functions of the receiver by cumulative and own time. HTTP parsing (uvicorn/httptools) is the
same for both and is not part of this profile; ``bench/receiver.py`` measures the whole thing.

Usage:
    .venv/bin/python bench/profile_receiver.py [--requests 3000] [--concurrency 16] [--top 35]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wa_webhook.http_guard import BODY_BOUND_SCOPE_KEY  # noqa: E402
from _common import BENCH_SECRET, BENCH_TOKEN_KEY, combined_bodies, drop_db, fresh_db, make_settings  # noqa: E402

DB_NAME = "wa_bench_receiver_profile"
PATH = "/api/v1/whatsapp/webhook"


async def drive(app, bodies: list[tuple[bytes, bytes]], n: int, conc: int) -> tuple[float, dict[int, int]]:
    """Send ``n`` POSTs through ``app`` with ``conc`` in flight; (CPU seconds, statuses)."""
    statuses: dict[int, int] = {}
    queue = iter(range(n))

    async def one(i: int) -> None:
        body, sig = bodies[i % len(bodies)]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"user-agent", b"facebookexternalua"), (b"x-hub-signature-256", sig)],
            "client": ("127.0.0.1", 40000 + i % 1000), "server": ("127.0.0.1", 8000), "state": {},
            # as under `wa-onboarding serve`, whose protocol bounds the body (wa_webhook.http_guard)
            BODY_BOUND_SCOPE_KEY: 10.0,
        }
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def worker() -> None:
        for i in queue:
            await one(i)

    t0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return time.process_time() - t0, statuses


async def lifespan(app):
    """Start ``app``'s lifespan; returns a coroutine function that shuts it down."""
    inbox: asyncio.Queue = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def send(message):
        (started if message["type"].startswith("lifespan.startup") else stopped).set()

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await started.wait()

    async def stop():
        await inbox.put({"type": "lifespan.shutdown"})
        await stopped.wait()
        await task

    return stop


async def run(app, bodies, n: int, conc: int, profile: bool):
    stop = await lifespan(app)
    await drive(app, bodies, min(500, n), conc)  # warm up (pool, caches)
    prof = cProfile.Profile(time.process_time) if profile else None
    if prof:
        prof.enable()
    cpu, statuses = await drive(app, bodies, n, conc)
    if prof:
        prof.disable()
    await stop()
    return cpu, statuses, prof


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--sort", default="cumulative")
    args = ap.parse_args()

    from wa_core.db.migrate import upgrade
    from wa_core.meta.signature import sign

    db = fresh_db(DB_NAME)
    try:
        upgrade(make_settings(db, Path("/tmp/wa_bench_receiver")))
        os.environ.update(DATABASE_URL=db, META_APP_SECRET=BENCH_SECRET, TOKEN_ENCRYPTION_KEY=BENCH_TOKEN_KEY, WA_DATA_DIR="/tmp/wa_bench_receiver")
        os.environ.pop("REDIS_URL", None)
        bodies = [(b, sign(b, BENCH_SECRET).encode()) for b in combined_bodies(200)]

        from bench.apps import minimal_app
        from wa_webhook.app import create_app

        import uvloop

        for name, factory in (("minimal", minimal_app), ("receiver", create_app), ("minimal", minimal_app), ("receiver", create_app)):
            cpu, statuses, _ = uvloop.run(run(factory(), bodies, args.requests, args.concurrency, False))
            print(f"{name:9} {1000 * cpu / args.requests:.3f} ms CPU per request (in-process, no HTTP), statuses {statuses}", flush=True)
        _, _, prof = uvloop.run(run(create_app(), bodies, args.requests, args.concurrency, True))
        stats = pstats.Stats(prof)
        stats.sort_stats(args.sort).print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    finally:
        drop_db(DB_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
