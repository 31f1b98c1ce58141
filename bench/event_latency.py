"""Webhook landed -> event visible to a pull consumer (long-poll) and a push consumer, across real processes.

Two stacks (``--stack``):

- ``lite`` (default): ``wa-onboarding serve`` (receiver and API), ``wa-onboarding process
  --stay-alive`` (a long-lived processing worker woken by NOTIFY; the Dagster run does the
  same loop) and, for push, a delivery worker process running the ``deliver_events`` loop
  (:func:`wa_core.events.delivery.run_delivery`) outside Dagster;
- ``dagster``: the whole stack as in production, like ``bench/latency.py`` (receiver, code
  server, webserver, daemon; processing in the sensor-launched long-lived runs, push in the
  ``deliver_events`` run kept alive by ``event_delivery_sensor``).

On a fresh Postgres database it binds one number and, for push (``--consumers pull,push``,
the default), sets the organization's endpoint to a local HTTP receiver in this process that
verifies every request with the ``standardwebhooks`` library's own verifier and records the
arrival time of each event. The endpoint is set once the delivery run is up (so the first
sample also measures "first push after the endpoint was set"). Then ``--samples`` times: opens
a long-poll ``GET /api/v1/whatsapp/events?after=<last>&wait=30`` with the organization's JWT,
POSTs one signed inbound message to ``/webhook`` and measures from the moment the receiver
answered 200 (landed and committed) to the moment the long-poll answered with the event (pull)
and the moment the push receiver got it (push). ``os.getloadavg()`` is recorded before and
after: the figures are only comparable at a similar load. Prints p50/p95/max per consumer and
saves ``bench/results/event-latency-*.json``.

    .venv/bin/python bench/event_latency.py --samples 50
    .venv/bin/python bench/event_latency.py --stack dagster --samples 30
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
from _common import BENCH_SECRET, BENCH_TOKEN_KEY, VENV_BIN, drop_db, free_port, fresh_db, machine_info, make_settings, save_results
from _common import service_env, stop_group, wait_http
from standardwebhooks.webhooks import Webhook

from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.engine import create_sync_engine
from wa_core.db.migrate import upgrade

DB = "wa_bench_event_latency"
DATA = Path("/tmp/wa_bench_event_latency")
JWT_SECRET = "bench-jwt-secret-not-real-0123456789"
WABA, PHONE = "100000000000901", "200000000000901"
DELIVERY = (
    "from wa_core.settings import get_settings\nfrom wa_core.db.engine import create_sync_engine\n"
    "from wa_core.meta.crypto import TokenCipher\nfrom wa_core.events.delivery import run_delivery\n"
    "s = get_settings()\n"
    "run_delivery(create_sync_engine(s), s, TokenCipher.from_hex(s.token_encryption_key, s.token_encryption_previous_keys), max_seconds=3600)\n"
)


def body(n: int) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550009001", "phone_number_id": PHONE},
             "contacts": [{"wa_id": "15550009101", "profile": {"name": "Bench"}}],
             "messages": [{"from": "15550009101", "id": wamid(n), "timestamp": str(int(time.time())), "type": "text",
                           "text": {"body": f"hello {n}"}}]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": value}]}]}).encode()


def wamid(n: int) -> str:
    return f"wamid.BENCHLAT{n:06d}"


class PushReceiver:
    """A local push endpoint: verifies each request with ``standardwebhooks`` and records when
    each ``message.received`` event (by wamid) first arrived (``time.perf_counter()``)."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.arrived: dict[str, float] = {}
        self.requests = self.refused = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers["content-length"]))
                at = time.perf_counter()
                try:
                    events = Webhook(receiver.secret).verify(raw, {k.lower(): v for k, v in self.headers.items()})["events"]
                except Exception:  # noqa: BLE001 - a bench: count and refuse
                    receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.cond:
                    receiver.requests += 1
                    for e in events:
                        if e["type"] == "message.received":
                            receiver.arrived.setdefault(e["data"]["wamid"], at)
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, key: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: key in self.arrived, timeout)
            return self.arrived.get(key)


def bind(engine) -> object:
    with engine.begin() as conn:
        org = ensure_organization(conn, "bench-org", "Bench")
        bind_waba(conn, org, WABA, [PhoneNumber(PHONE, "15550009001", "Bench")], status="active")
    return org


def set_endpoint(engine, org, url: str) -> str:
    from wa_core.events.push import set_endpoint as set_

    from wa_core.meta.crypto import TokenCipher

    with engine.begin() as conn:
        return set_(conn, TokenCipher.from_hex(BENCH_TOKEN_KEY), org, url)


def lite(args, push: PushReceiver | None, measure) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    url = fresh_db(DB)
    settings = make_settings(url, DATA)
    upgrade(settings)
    engine = create_sync_engine(settings)
    org = bind(engine)
    # the delivery run up before the endpoint is set (the first push is then one of the samples)
    env = service_env(DATA, url, JWT_SECRET=JWT_SECRET, PROCESSING_ORG_WEBHOOKS_PER_MINUTE="1000000", EVENT_PUSH_KEEP_ALIVE="true")
    port = free_port()
    procs = [subprocess.Popen([str(VENV_BIN / "wa-onboarding"), "serve", "--port", str(port)], env=env, start_new_session=True),
             subprocess.Popen([str(VENV_BIN / "wa-onboarding"), "process", "--stay-alive"], env=env, start_new_session=True)]
    try:
        if push is not None:
            procs.append(subprocess.Popen([str(VENV_BIN / "python"), "-c", DELIVERY], env=env, start_new_session=True))
            time.sleep(3)  # the delivery worker is up and listening before the endpoint exists (keep-alive)
            push.secret = set_endpoint(engine, org, push.url)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs[0])
        measure(f"http://127.0.0.1:{port}")
    finally:
        for proc in reversed(procs):
            stop_group(proc)
        engine.dispose()
        drop_db(DB)


def dagster_stack(args, push: PushReceiver | None, measure) -> None:
    from latency import APP_DB, Stack

    from dagster import DagsterRunStatus, RunsFilter

    os.environ["JWT_SECRET"] = JWT_SECRET
    # the delivery run kept up before any endpoint exists (the default, false, launches it only
    # once an endpoint is enabled, a sensor tick later), so the first sample measures a push too
    os.environ["EVENT_PUSH_KEEP_ALIVE"] = "true"
    stack = Stack("postgres", argparse.Namespace(org_quota=1_000_000, shards=1))
    try:
        org = bind(stack.engine)
        stack.start()
        stack.wait_shards_started(1)
        deadline = time.monotonic() + 180
        while not stack.instance.get_run_records(RunsFilter(job_name="deliver_events", statuses=[DagsterRunStatus.STARTED]), limit=1):
            stack.services.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the deliver_events run did not start (EVENT_PUSH_KEEP_ALIVE)")
            time.sleep(0.5)
        time.sleep(2)  # the run is past its start-up and listening
        if push is not None:
            push.secret = set_endpoint(stack.engine, org, push.url)
        measure(f"http://127.0.0.1:{stack.port}")
    finally:
        stack.stop()
        drop_db(APP_DB)
        drop_db(APP_DB + "_dagster")


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"samples": 0}
    return {"samples": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)] * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--stack", choices=("lite", "dagster"), default="lite")
    ap.add_argument("--consumers", default="pull,push", help="comma-separated: pull, push")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between samples (the long-poll is waiting)")
    args = ap.parse_args()
    consumers = {c.strip() for c in args.consumers.split(",") if c.strip()}
    push = PushReceiver() if "push" in consumers else None
    token = jwt.encode({"org_id": "bench-org", "exp": int(time.time()) + 7200}, JWT_SECRET, algorithm="HS256")
    pulls: list[float] = []
    pushes: list[float] = []
    load = {"before": os.getloadavg()}

    def measure(base: str) -> None:
        after = 0
        with httpx.Client(timeout=40) as client:
            for n in range(args.samples):
                answer: dict = {}

                def poll() -> None:
                    r = client.get(f"{base}/api/v1/whatsapp/events", params={"after": after, "wait": 30}, headers={"Authorization": f"Bearer {token}"})
                    answer["at"], answer["json"] = time.perf_counter(), r.json()

                t = threading.Thread(target=poll) if "pull" in consumers else None
                if t is not None:
                    t.start()
                time.sleep(args.gap)
                raw = body(n)
                sig = "sha256=" + hmac.new(BENCH_SECRET.encode(), raw, hashlib.sha256).hexdigest()
                r = client.post(f"{base}/api/v1/whatsapp/webhook", content=raw, headers={"X-Hub-Signature-256": sig, "content-type": "application/json"})
                landed = time.perf_counter()
                assert r.status_code == 200, r.text
                line = f"{n:>3}"
                if t is not None:
                    t.join(40)
                    assert any(e["type"] == "message.received" for e in answer["json"]["events"]), answer
                    after = answer["json"]["next_cursor"]
                    pulls.append(answer["at"] - landed)
                    line += f" pull {pulls[-1] * 1000:7.1f} ms"
                if push is not None:
                    at = push.wait(wamid(n), 60)
                    if at is None:
                        raise RuntimeError(f"sample {n}: no push within 60 s")
                    pushes.append(at - landed)
                    line += f" push {pushes[-1] * 1000:7.1f} ms"
                print(line, flush=True)

    try:
        (lite if args.stack == "lite" else dagster_stack)(args, push, measure)
    finally:
        if push is not None:
            push.server.shutdown()
    load["after"] = os.getloadavg()
    result = {"stack": args.stack, "loadavg": load, "pull": summary(pulls), "push": summary(pushes),
              "push_first_ms": round(pushes[0] * 1000, 1) if pushes else None,
              "push_requests": push.requests if push else 0, "push_refused": push.refused if push else 0}
    print(json.dumps(result))
    print("results:", save_results(f"event-latency-{args.stack}", {"machine": machine_info(), "summary": result,
                                                                  "pull_s": pulls, "push_s": pushes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
