"""Scale-out on one Postgres: two receivers behind a round-robin "load balancer" and two shard
workers (``wa-onboarding process --shard k --shards 2 --stay-alive``), a Meta-like sender that
retries non-200 answers and redelivers some webhooks, one worker killed (SIGKILL) midway and
restarted. Zero loss, zero duplicates: every sent wamid and status is stored exactly once and
every landed row is processed. Every process is started in its own process group and stopped,
also on failure."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, TOKEN_KEY
from tests.dev.test_simulate import free_port
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import whatsapp_message_statuses, whatsapp_messages, whatsapp_webhook_logs as logs
from wa_core.settings import Settings
from wa_dev.simulate import SendReport, SyntheticStream, deliver, synthetic_numbers

CLI = str(Path(sys.executable).parent / "wa-onboarding")
ROOT = Path(__file__).resolve().parents[2]
WEBHOOKS = 600
REDELIVERED = 60  # Meta delivers at least once: these bodies go out a second time, to the other receiver


class Processes:
    """Child processes, each in its own session (process group), logging to ``log_dir``."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen([CLI, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def _until(condition, what: str, procs: Processes, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        for name in ("receiver-0", "receiver-1"):
            proc = procs.procs.get(name)
            assert proc is None or proc.poll() is None, f"{name} exited: {procs.log(name)[-2000:]}"
        time.sleep(0.2)


def _counts(engine: Engine) -> Counter:
    with engine.connect() as conn:
        return Counter(dict(conn.execute(sa.select(logs.c.status, sa.func.count()).group_by(logs.c.status)).all()))


def _open_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(logs).where(sa.or_(logs.c.status != "processed", logs.c.locked_until.is_not(None)))
        ).scalar_one()


async def _send(urls: list[str], bodies: list[bytes], redelivered: list[bytes], report: SendReport) -> None:
    """Round-robin over the receivers (the load balancer), 16 in flight, ~150/s; retries non-200
    like Meta (``deliver``); then the redeliveries, each to the other receiver."""
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def one(i: int, body: bytes) -> None:
            async with limit:
                await deliver(client, urls[i % len(urls)], body, APP_SECRET, report, max_attempts=8)

        tasks = []
        for i, body in enumerate(bodies):
            tasks.append(asyncio.create_task(one(i, body)))
            await asyncio.sleep(1 / 150)
        tasks += [asyncio.create_task(one(i + 1, body)) for i, body in enumerate(redelivered)]
        await asyncio.gather(*tasks)


def _sent_items(bodies: list[bytes]) -> tuple[set[str], set[tuple[str, str]]]:
    wamids, statuses = set(), set()
    for body in bodies:
        value = json.loads(body)["entry"][0]["changes"][0]["value"]
        wamids |= {m["id"] for m in value.get("messages", [])}
        statuses |= {(s["id"], s["status"]) for s in value.get("statuses", [])}
    return wamids, statuses


def test_two_receivers_and_two_shards_lose_nothing_and_store_nothing_twice(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    numbers = synthetic_numbers(3)
    with engine.begin() as conn:
        for n in numbers:
            org = ensure_organization(conn, n.org_external_id, n.org_name)
            bind_waba(conn, org, n.waba_id, [PhoneNumber(n.phone_number_id, n.display_phone_number, n.org_name)], status="active")
    stream = SyntheticStream(numbers, seed=11)
    bodies = [stream.next_body() for _ in range(WEBHOOKS)]
    redelivered = bodies[::WEBHOOKS // REDELIVERED][:REDELIVERED]
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "REDIS_URL")}
    env.update(
        DATABASE_URL=settings.database_url,
        META_APP_SECRET=APP_SECRET,
        TOKEN_ENCRYPTION_KEY=TOKEN_KEY,
        WA_DATA_DIR=str(tmp_path),
        PROCESSING_SHARDS="2",
        PROCESSING_BATCH_SIZE="50",
        # a killed worker's rows come back soon; quotas out of the way (this is about loss, not fairness)
        PROCESSING_LEASE_SECONDS="5",
        PROCESSING_ORG_WEBHOOKS_PER_MINUTE="1000000",
        PROCESSING_ORG_MAX_IN_FLIGHT="100000",
        PROCESSING_LISTEN_POLL_SECONDS="1",
    )
    procs = Processes(env, tmp_path)
    report = SendReport()
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            procs.start(f"receiver-{i}", "serve", "--host", "127.0.0.1", "--port", str(port))
        for shard in (0, 1):
            procs.start(f"worker-{shard}", "process", "--stay-alive", "--shard", str(shard), "--shards", "2")

        def ready() -> bool:
            try:
                return all(httpx.get(f"http://127.0.0.1:{p}/readyz", timeout=2).status_code == 200 for p in ports)
            except httpx.HTTPError:
                return False

        _until(ready, "both receivers ready", procs, 60)
        urls = [f"http://127.0.0.1:{p}/api/v1/whatsapp/webhook" for p in ports]

        async def scenario() -> None:
            sending = asyncio.create_task(_send(urls, bodies, redelivered, report))
            # midway: kill worker 1 hard (its leased rows stay leased), then restart it
            while sum(_counts(engine).values()) < WEBHOOKS // 2:
                await asyncio.sleep(0.05)
            procs.kill("worker-1")
            await asyncio.sleep(1.0)
            procs.start("worker-1-restarted", "process", "--stay-alive", "--shard", "1", "--shards", "2")
            await sending

        asyncio.run(scenario())
        assert report.gave_up == 0 and report.delivered == WEBHOOKS + REDELIVERED, report.summary()
        _until(lambda: _open_rows(engine) == 0, "every landed row processed", procs)
        # both workers still alive: the survivor and the restarted one
        assert procs.procs["worker-0"].poll() is None and procs.procs["worker-1-restarted"].poll() is None
    finally:
        procs.stop_all()
    # graceful stop (SIGTERM): each worker finished its batch and reported
    assert "shard 0 of 2: processed" in procs.log("worker-0") and "(stopped)" in procs.log("worker-0")
    counts = _counts(engine)
    assert counts == {"processed": WEBHOOKS + REDELIVERED}  # every delivery landed once, every row processed
    wamids, statuses = _sent_items(bodies)
    with engine.connect() as conn:
        stored = Counter(w for (w,) in conn.execute(sa.select(whatsapp_messages.c.wamid)))
        stored_statuses = Counter(tuple(r) for r in conn.execute(sa.select(whatsapp_message_statuses.c.wamid, whatsapp_message_statuses.c.status)))
    assert set(stored) == wamids and set(stored.values()) == {1}  # every inbound wamid exactly once
    assert set(stored_statuses) == statuses and set(stored_statuses.values()) == {1}
