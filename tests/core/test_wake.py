"""Waking an idle processing run: the receiver's NOTIFY on Postgres, data_version on SQLite,
polling when the listener's connection is gone. Waits are on conditions, never on budgets:
the fallback polls are set to an hour, so only a wake can explain a processed row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.conftest import APP_SECRET, fixture_bytes
from tests.helpers import bind_fixture_numbers, land
from wa_core.db.engine import create_sync_engine
from wa_core.db.migrate import upgrade
from wa_core.db.schema import whatsapp_webhook_logs as logs
from wa_core.meta.signature import sign
from wa_core.processing.runner import RunStats, run_processing
from wa_core.processing.wake import LANDED_CHANNEL, LOST, NOTIFIED, RECONNECTED, TIMEOUT, LandingListener, SqliteChangeWaker
from wa_core.settings import Settings
from wa_webhook.app import create_app

HOUR = 3600.0


def _until(condition: Callable[[], object], what: str, limit: float = 60.0):
    """Poll ``condition`` until it is truthy; fail (not hang) after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def _status(engine: Engine, row_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(logs.c.status).where(logs.c.id == row_id)).scalar_one()


class Watched:
    """A waker wrapper that records each wait's start and outcome."""

    def __init__(self, waker) -> None:
        self.inner = waker
        self.waiting = threading.Event()
        self.outcomes: list[str] = []
        self.started: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def wait(self, timeout: float) -> str:
        self.started.append(len(self.outcomes))  # how many waits had ended when this one began
        self.waiting.set()
        outcome = self.inner.wait(timeout)
        self.outcomes.append(outcome)
        self.waiting.clear()
        return outcome


class Loop:
    """``run_processing`` in a thread, stay-alive, stopped by :meth:`stop`."""

    def __init__(self, engine: Engine, settings: Settings, waker) -> None:
        self.stop_flag = threading.Event()
        self.stats: RunStats | None = None

        def target() -> None:
            self.stats = run_processing(
                engine, settings, idle_exit_seconds=float("inf"), max_seconds=HOUR, waker=waker, should_stop=self.stop_flag.is_set
            )

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self) -> RunStats:
        self.stop_flag.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.stats


def _listener(settings: Settings) -> Watched:
    listener = LandingListener(settings.asyncpg_dsn, poll_seconds=HOUR, listen_poll_seconds=HOUR)
    listener.ready()
    assert listener.notifying
    return Watched(listener)


def test_a_webhook_landed_through_the_receiver_wakes_an_idle_run(settings: Settings, engine: Engine) -> None:
    bind_fixture_numbers(engine)
    waker = _listener(settings)
    loop = Loop(engine, settings, waker)
    try:
        assert waker.waiting.wait(30), "the loop never went idle"
        body = fixture_bytes("messages_text.json")
        with TestClient(create_app(settings)) as client:
            r = client.post(
                "/api/v1/whatsapp/webhook",
                content=body,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)},
            )
            assert r.status_code == 200
            with engine.connect() as conn:
                row_id = conn.execute(sa.select(sa.func.max(logs.c.id))).scalar_one()
            _until(lambda: _status(engine, row_id) == "processed", "the landed row processed")
            assert client.app.state.landing._announcer.sent >= 1
    finally:
        stats = loop.stop()
        waker.close()
    # the fallback poll is an hour away and a stop check never claims: the NOTIFY woke the run
    assert waker.outcomes[0] == NOTIFIED
    assert stats.wakes[NOTIFIED] >= 1 and stats.wakes[TIMEOUT] == 0
    assert stats.webhooks == 1 and stats.by_status == {"processed": 1} and stats.ended == "stopped"


def test_notifications_for_another_shard_do_not_wake_a_run(settings: Settings) -> None:
    listener = LandingListener(settings.asyncpg_dsn, shard=1, poll_seconds=HOUR, listen_poll_seconds=HOUR)
    listener.ready()
    try:
        with psycopg.connect(settings.asyncpg_dsn, autocommit=True) as conn:
            conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '0')")
            assert listener.wait(1.0) == TIMEOUT  # shard 0's notification
            conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '1')")
            assert listener.wait(HOUR) == NOTIFIED
            conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '')")  # any shard
            assert listener.wait(HOUR) == NOTIFIED
            for _ in range(3):
                conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '')")
        _until(lambda: listener.drain(), "the three notifications arrived")  # drained without waiting
    finally:
        listener.close()


def test_a_dropped_listener_reconnects_and_the_run_claims_once(settings: Settings, engine: Engine) -> None:
    bind_fixture_numbers(engine)
    listener = LandingListener(settings.asyncpg_dsn, poll_seconds=HOUR, listen_poll_seconds=HOUR)
    listener.ready()
    # the reconnect (RECONNECT_SECONDS after the drop) waits until the row below has landed: on
    # a busy machine it could otherwise come first, and the row would wait for the hourly poll
    landed = threading.Event()
    connect = listener._connect

    def connect_once_landed() -> bool:
        landed.wait(30)
        return connect()

    listener._connect = connect_once_landed
    waker = Watched(listener)
    loop = Loop(engine, settings, waker)
    try:
        assert waker.waiting.wait(30)
        pid = listener._conn.info.backend_pid
        with psycopg.connect(settings.asyncpg_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        _until(lambda: LOST in waker.outcomes, "the loop saw the connection drop")
        # the run claims once after the drop, then waits again: only then does the row land (had
        # it landed before that claim, that claim would take it, before any reconnect)
        lost_at = waker.outcomes.index(LOST)
        _until(lambda: any(ended > lost_at for ended in waker.started), "the claim after the drop done")
        # a row landed while the listener is down announces nothing; the claim after the
        # reconnect finds it (every poll is an hour away)
        row_id = land(engine, fixture_bytes("messages_text.json"))
        assert _status(engine, row_id) == "pending"
        landed.set()
        _until(lambda: _status(engine, row_id) == "processed", "the row landed during the outage processed")
        assert RECONNECTED in waker.outcomes and listener.notifying
        # and notifications work again after the reconnect
        outcomes_before = len(waker.outcomes)
        _until(lambda: waker.waiting.is_set() and len(waker.outcomes) > outcomes_before, "idle again")
        second = land(engine, fixture_bytes("messages_image.json"))
        with psycopg.connect(settings.asyncpg_dsn, autocommit=True) as conn:
            conn.execute(f"SELECT pg_notify('{LANDED_CHANNEL}', '')")
        _until(lambda: _status(engine, second) == "processed", "the row announced after the reconnect processed")
    finally:
        landed.set()
        stats = loop.stop()
        listener.close()
    assert stats.webhooks == 2 and stats.wakes[NOTIFIED] >= 1


def test_sqlite_an_idle_run_wakes_on_a_commit_of_another_connection(tmp_path) -> None:
    settings = Settings(_env_file=None, database_url=None, WA_DATA_DIR=str(tmp_path), meta_app_secret=APP_SECRET)
    upgrade(settings)
    engine = create_sync_engine(settings)
    try:
        bind_fixture_numbers(engine)
        waker = Watched(SqliteChangeWaker(str(settings.sqlite_path), poll_seconds=0.05, listen_poll_seconds=HOUR))
        waker.ready()
        loop = Loop(engine, settings, waker)
        try:
            assert waker.waiting.wait(30)
            row_id = land(engine, fixture_bytes("messages_text.json"))
            _until(lambda: _status(engine, row_id) == "processed", "the SQLite row processed")
        finally:
            stats = loop.stop()
            waker.close()
        assert waker.outcomes[0] == NOTIFIED and stats.wakes[TIMEOUT] == 0 and stats.webhooks == 1
    finally:
        engine.dispose()
