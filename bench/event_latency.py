"""Webhook landed -> event visible to a pull consumer (long-poll), across real processes.

Starts ``wa-onboarding serve`` (the receiver and the API) and ``wa-onboarding process
--stay-alive`` (a long-lived processing worker woken by NOTIFY; the Dagster run does the same
loop) on a fresh Postgres database, binds one number, then ``--samples`` times: opens a
long-poll ``GET /api/v1/whatsapp/events?after=<last>&wait=30`` with the organization's JWT,
POSTs one signed inbound message to ``/webhook`` and measures from the moment the receiver
answered 200 (landed and committed) to the moment the long-poll answered with the event.
Prints p50/p95/max and saves ``bench/results/event-latency-*.json``.

    .venv/bin/python bench/event_latency.py --samples 50
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import jwt
from _common import BENCH_SECRET, VENV_BIN, drop_db, free_port, fresh_db, machine_info, make_settings, save_results, service_env, stop_group
from _common import wait_http

from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.engine import create_sync_engine
from wa_core.db.migrate import upgrade

DB = "wa_bench_event_latency"
DATA = Path("/tmp/wa_bench_event_latency")
JWT_SECRET = "bench-jwt-secret-not-real-0123456789"
WABA, PHONE = "100000000000901", "200000000000901"


def body(n: int) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550009001", "phone_number_id": PHONE},
             "contacts": [{"wa_id": "15550009101", "profile": {"name": "Bench"}}],
             "messages": [{"from": "15550009101", "id": f"wamid.BENCHLAT{n:06d}", "timestamp": str(int(time.time())), "type": "text",
                           "text": {"body": f"hello {n}"}}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": value}]}]}).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    url = fresh_db(DB)
    settings = make_settings(url, DATA)
    upgrade(settings)
    engine = create_sync_engine(settings)
    with engine.begin() as conn:
        org = ensure_organization(conn, "bench-org", "Bench")
        bind_waba(conn, org, WABA, [PhoneNumber(PHONE, "15550009001", "Bench")], status="active")
    engine.dispose()
    env = service_env(DATA, url, JWT_SECRET=JWT_SECRET, PROCESSING_ORG_WEBHOOKS_PER_MINUTE="1000000")
    port = free_port()
    serve = subprocess.Popen([str(VENV_BIN / "wa-onboarding"), "serve", "--port", str(port)], env=env, start_new_session=True)
    worker = subprocess.Popen([str(VENV_BIN / "wa-onboarding"), "process", "--stay-alive"], env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    token = jwt.encode({"org_id": "bench-org", "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")
    latencies: list[float] = []
    try:
        wait_http(f"{base}/healthz", proc=serve)
        after = 0
        with httpx.Client(timeout=40) as client:
            for n in range(args.samples):
                answer: dict = {}

                def poll() -> None:
                    r = client.get(f"{base}/api/v1/whatsapp/events", params={"after": after, "wait": 30},
                                   headers={"Authorization": f"Bearer {token}"})
                    answer["at"], answer["json"] = time.perf_counter(), r.json()

                t = threading.Thread(target=poll)
                t.start()
                time.sleep(0.3)  # the long-poll is waiting
                raw = body(n)
                sig = "sha256=" + hmac.new(BENCH_SECRET.encode(), raw, hashlib.sha256).hexdigest()
                r = client.post(f"{base}/api/v1/whatsapp/webhook", content=raw, headers={"X-Hub-Signature-256": sig, "content-type": "application/json"})
                landed = time.perf_counter()
                assert r.status_code == 200, r.text
                t.join(40)
                events = answer["json"]["events"]
                assert any(e["type"] == "message.received" for e in events), answer
                after = answer["json"]["next_cursor"]
                latencies.append(answer["at"] - landed)
                print(f"{n:>3} {latencies[-1] * 1000:7.1f} ms", flush=True)
    finally:
        stop_group(worker)
        stop_group(serve)
        drop_db(DB)
    ordered = sorted(latencies)
    summary = {"samples": len(ordered), "p50_ms": statistics.median(ordered) * 1000,
               "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, "max_ms": ordered[-1] * 1000}
    print(summary)
    print("results:", save_results("event-latency", {"machine": machine_info(), "summary": summary, "latencies_s": latencies}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
