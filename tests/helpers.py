"""Helpers shared by tests: landing rows directly, binding the fixture numbers, reading rows."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.routing import routing_waba_id

ACME_WABA, ACME_PHONE = "100000000000001", "200000000000001"
GLOBEX_WABA, GLOBEX_PHONE = "100000000000002", "200000000000002"


def land(engine: Engine, body: bytes, received_at: datetime | None = None) -> int:
    """Insert a webhook row as the receiver would (arrival ``received_at``, default now, UTC);
    returns its id."""
    now = received_at or utcnow()
    with engine.begin() as conn:
        return conn.execute(
            sa.insert(whatsapp_webhook_logs)
            .values(
                body=body,
                body_sha256=hashlib.sha256(body).hexdigest(),
                body_size=len(body),
                signature_status="valid",
                waba_id=routing_waba_id(body),
                status="pending",
                attempts=0,
                received_at=now,
                updated_at=now,
            )
            .returning(whatsapp_webhook_logs.c.id)
        ).scalar_one()


def bind_fixture_numbers(engine: Engine, *, acme_status: str = "awaiting_confirmation") -> dict[str, Any]:
    """Bind the corpus's WABAs and numbers: Acme (coexistence) and Globex."""
    with engine.begin() as conn:
        acme = ensure_organization(conn, "acme", "Acme Store")
        globex = ensure_organization(conn, "globex", "Globex Ltd")
        bind_waba(conn, acme, ACME_WABA, [PhoneNumber(ACME_PHONE, "15550000001", "Acme Store", True)], status=acme_status)
        bind_waba(conn, globex, GLOBEX_WABA, [PhoneNumber(GLOBEX_PHONE, "15550000002", "Globex Ltd")], status="active")
    return {"acme": acme, "globex": globex}


def rows(engine: Engine, table: sa.Table, *where: Any) -> list[Any]:
    """All rows of ``table`` matching ``where``."""
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where)).all()


def webhook_row(engine: Engine, row_id: int) -> Any:
    """One ``whatsapp_webhook_logs`` row."""
    with engine.connect() as conn:
        return conn.execute(sa.select(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.id == row_id)).one()


def waiting_on_a_lock(engine: Engine, pid: int) -> bool:
    """True while the Postgres backend ``pid`` waits on a lock."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar() is True


def once_it_waits(engine: Engine, work: Any, release: Any, wait_seconds: float = 30.0) -> dict[str, Any]:
    """Race two transactions: ``work(conn)`` runs in a thread on a connection of its own (then
    commits) and must end up waiting on a lock the caller's open transaction holds; once it
    waits, ``release()`` ends the caller's transaction. Returns ``{"result": work's result}``.
    Fails if ``work`` never waits (the race it tests would not have happened)."""
    import threading
    import time

    done: dict[str, Any] = {}

    def second() -> None:
        with engine.connect() as conn:
            done["pid"] = conn.connection.dbapi_connection.info.backend_pid
            done["result"] = work(conn)
            conn.commit()

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + wait_seconds
        while ("pid" not in done or not waiting_on_a_lock(engine, done["pid"])) and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        assert "pid" in done and waiting_on_a_lock(engine, done["pid"]), "the second transaction never waited on the lock"
        release()
    finally:
        thread.join(wait_seconds)
    return done
