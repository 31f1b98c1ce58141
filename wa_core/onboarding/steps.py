"""The follow-up of an Embedded Signup whose code exchange succeeded, step by step.

Source: Meta, "Onboarding customers as a Tech Provider" (subscribe the app to the WABA,
list and register phone numbers) and "Onboarding WhatsApp Business app users"
(coexistence: never register; request the contact sync, then the history sync, each once,
within 24 hours). Every step records what it did, so a rerun from the Dagster UI skips what
is done: subscribing and listing are idempotent at Meta, registration is skipped once
``registered_at`` is set, and a sync request is marked *before* it is sent, so it is never
sent twice, even if the run dies right after.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wa_core.bindings import PhoneNumber, bind_waba
from wa_core.coexistence_sync import CONTACTS, HISTORY, SYNC_WINDOW, send_request
from wa_core.db.schema import as_utc, utcnow, whatsapp_configs, whatsapp_connections, whatsapp_onboarding
from wa_core.events.outbox import write_events
from wa_core.events.produce import onboarding_event
from wa_core.meta.graph.errors import GraphError
from wa_core.onboarding.service import fail_onboarding

log = logging.getLogger("wa_core.onboarding")

MAX_FOLLOW_UP_ATTEMPTS = 6


@dataclass
class FollowUpReport:
    """What one ``finish_onboarding`` run did (shown as run metadata)."""

    onboarding_id: str
    outcome: str = "done"
    steps: list[str] = field(default_factory=list)
    error: str | None = None


def finish_onboarding(
    engine: Engine, graph: Any, cipher: Any, onboarding_id: uuid.UUID, *, register_pin: str | None,
    token_expiring_soon: timedelta = timedelta(days=7),
) -> FollowUpReport:
    """Run the follow-up; an unexpected error (not Meta's) fails the onboarding instead of
    leaving it ``running`` for the sensor to restart forever. See :func:`_finish`. Once the
    follow-up is done (committed) the business token is checked (``debug_token``,
    :func:`wa_core.token_health.check_connection`; ``token_expiring_soon``: the
    ``expiring_soon`` window), best effort: the new numbers show their token health at once,
    not ``not_checked`` until the nightly check, and a failing check never fails the onboarding."""
    try:
        report = _finish(engine, graph, cipher, onboarding_id, register_pin=register_pin)
    except Exception as exc:
        if isinstance(exc, sa.exc.OperationalError):
            raise  # the database itself: the run fails, the sensor retries later
        message = f"follow-up error: {type(exc).__name__}"
        with engine.begin() as conn:
            fail_onboarding(conn, onboarding_id, "internal", message)
            conn.execute(sa.update(whatsapp_onboarding).where(whatsapp_onboarding.c.id == onboarding_id).values(follow_up_status="failed"))
        log.exception("onboarding %s follow-up failed", onboarding_id)
        return FollowUpReport(str(onboarding_id), outcome="failed", error=message)
    if report.outcome == "done":
        _check_token(engine, graph, cipher, onboarding_id, token_expiring_soon, report)
    return report


def _check_token(engine: Engine, graph: Any, cipher: Any, onboarding_id: uuid.UUID, expiring_soon: timedelta, report: FollowUpReport) -> None:
    """The token-health check after a done follow-up; logs and notes a failure, never raises."""
    from wa_core.token_health import check_connection, state_label

    try:
        c = whatsapp_connections.c
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(c.id, c.business_token_encrypted).join(whatsapp_onboarding, whatsapp_onboarding.c.connection_id == c.id)
                .where(whatsapp_onboarding.c.id == onboarding_id)
            ).one()
        state = check_connection(engine, graph, row.id, cipher.decrypt(row.business_token_encrypted, row.id), expiring_soon)
        report.steps.append(f"business token checked: {state_label(state)}")
    except Exception as exc:  # noqa: BLE001 - best effort: the nightly check_token_health catches up
        log.warning("onboarding %s: token health check failed: %s", onboarding_id, type(exc).__name__)
        report.steps.append(f"business token not checked ({type(exc).__name__}); the nightly check will")


def _finish(engine: Engine, graph: Any, cipher: Any, onboarding_id: uuid.UUID, *, register_pin: str | None) -> FollowUpReport:
    """Run every follow-up step for one onboarding; returns what happened.

    Transient Graph errors (rate limits, 5xx; already retried by the client) leave the
    onboarding ``waiting`` with a later ``follow_up_next_at``, for the sensor to try again,
    up to :data:`MAX_FOLLOW_UP_ATTEMPTS`. Permanent ones fail the onboarding with Meta's
    code and message, which the status API shows.
    """
    report = FollowUpReport(str(onboarding_id))
    o, c = whatsapp_onboarding.c, whatsapp_connections.c
    with engine.begin() as conn:
        onboarding = conn.execute(sa.select(whatsapp_onboarding).where(o.id == onboarding_id)).one()
        if onboarding.connection_id is None or onboarding.status not in ("token_exchanged", "completed"):
            report.outcome, report.error = "skipped", f"onboarding is {onboarding.status}"
            return report
        status_now = conn.execute(sa.select(c.status).where(c.id == onboarding.connection_id)).scalar()
        if status_now in ("inactive", "deleted"):  # disconnected meanwhile: never re-subscribe
            conn.execute(sa.update(whatsapp_onboarding).where(o.id == onboarding_id).values(follow_up_status="done", follow_up_done_at=utcnow()))
            report.outcome, report.error = "skipped", f"the connection was {status_now} before the follow-up ran"
            return report
        conn.execute(
            sa.update(whatsapp_onboarding).where(o.id == onboarding_id).values(
                follow_up_status="running", follow_up_attempts=o.follow_up_attempts + 1, updated_at=utcnow()
            )
        )
        connection = conn.execute(sa.select(whatsapp_connections).where(c.id == onboarding.connection_id)).one()
    token = cipher.decrypt(connection.business_token_encrypted, connection.id)
    try:
        _subscribe(engine, graph, connection, token, report)
        numbers = _sync_numbers(engine, graph, onboarding, connection, token, report)
        for number in numbers:
            if number.is_coexistence:
                _request_syncs(engine, graph, number, token, report)
            elif number.registered_at is None:
                _register(engine, graph, number, token, register_pin, report)
    except GraphError as exc:
        from wa_core.token_health import mark_from_graph_error

        mark_from_graph_error(engine, connection.id, exc)
        return _graph_failure(engine, onboarding, exc, report)
    now = utcnow()
    with engine.begin() as conn:
        values: dict[str, Any] = {"follow_up_status": "done", "follow_up_done_at": now, "follow_up_next_at": None, "updated_at": now}
        current = conn.execute(sa.select(o.confirmed_at, o.status).where(o.id == onboarding_id)).one()
        if current.confirmed_at is not None and current.status == "token_exchanged":
            values.update(status="completed", completed_at=now)
        conn.execute(sa.update(whatsapp_onboarding).where(o.id == onboarding_id).values(**values))
        if values.get("status") == "completed":
            org = conn.execute(sa.select(o.organization_id, o.connection_id).where(o.id == onboarding_id)).one()
            write_events(conn, [onboarding_event(org.organization_id, onboarding_id, "completed", now, connection_id=org.connection_id)])
    report.steps.append("follow-up done" + (" and confirmed: completed" if values.get("status") == "completed" else "; waiting for PARTNER_ADDED"))
    return report


def _subscribe(engine: Engine, graph: Any, connection: Any, token: str, report: FollowUpReport) -> None:
    if connection.subscribed_at is not None:
        report.steps.append("already subscribed")
        return
    graph.subscribe_app(connection.waba_id, token)
    apps = graph.subscribed_apps(connection.waba_id, token)  # confirm it took
    if not apps:
        raise _NotConfirmed()
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == connection.id).values(subscribed_at=utcnow()))
    report.steps.append("app subscribed to the WABA (confirmed)")


class _NotConfirmed(GraphError):
    """The subscription did not show in ``GET subscribed_apps``: try the follow-up again."""

    def __init__(self) -> None:
        super().__init__("the app subscription is not visible in subscribed_apps yet", retryable=True)


def _sync_numbers(engine: Engine, graph: Any, onboarding: Any, connection: Any, token: str, report: FollowUpReport) -> list[Any]:
    listed = graph.phone_numbers(connection.waba_id, token)
    numbers = [
        PhoneNumber(
            phone_number_id=str(n["id"]),
            display_phone_number=n.get("display_phone_number"),
            verified_name=n.get("verified_name"),
            is_coexistence=bool(n.get("is_on_biz_app")) or bool(onboarding.is_coexistence),
        )
        for n in listed
    ]
    with engine.begin() as conn:
        bind_waba(conn, onboarding.organization_id, connection.waba_id, numbers)
        if connection.status == "active":  # PARTNER_ADDED came first: the new numbers are live
            conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.connection_id == connection.id).values(status="connected"))
        if onboarding.is_coexistence:
            deadline = (onboarding.token_exchanged_at or utcnow()) + SYNC_WINDOW
            cfg = whatsapp_configs.c  # a new onboarding (offboarded, then ES again) opens a new window
            conn.execute(
                sa.update(whatsapp_configs)
                .where(cfg.connection_id == connection.id, sa.or_(cfg.sync_deadline_at.is_(None), cfg.sync_deadline_at < deadline))
                .values(sync_deadline_at=deadline)
            )
        rows = conn.execute(sa.select(whatsapp_configs).where(whatsapp_configs.c.connection_id == connection.id)).all()
    report.steps.append(f"{len(numbers)} phone number(s) listed")
    return rows


def _register(engine: Engine, graph: Any, number: Any, token: str, pin: str | None, report: FollowUpReport) -> None:
    if not pin:
        raise _ConfigMissing("REGISTER_PIN is not set: cannot register the phone number")
    graph.register(number.phone_number_id, token, pin)
    with engine.begin() as conn:
        conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.id == number.id).values(registered_at=utcnow()))
    report.steps.append(f"number {number.phone_number_id} registered")


class _ConfigMissing(GraphError):
    """Our configuration lacks something the step needs (not Meta's error; not retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def _request_syncs(engine: Engine, graph: Any, number: Any, token: str, report: FollowUpReport) -> None:
    """Contact sync, then history sync: each sent at most once, never retried automatically
    (:func:`~wa_core.coexistence_sync.send_request`; an operator can re-request later)."""
    for sync_type in (CONTACTS, HISTORY):
        now = utcnow()
        if number.sync_deadline_at is not None and as_utc(number.sync_deadline_at) < now:
            report.steps.append(f"{sync_type} not requested: the 24 h window closed")
            continue
        result = send_request(engine, graph, token, number, sync_type, now)
        if result.outcome == "refused":
            report.steps.append(f"{sync_type} already requested")
            continue
        if result.outcome == "failed":
            report.steps.append(f"{sync_type} request failed (not retried): {result.message}")
            if sync_type == CONTACTS:
                return  # history only after the contacts
            continue
        report.steps.append(f"{sync_type} requested ({result.request_id})")


def _graph_failure(engine: Engine, onboarding: Any, exc: GraphError, report: FollowUpReport) -> FollowUpReport:
    o = whatsapp_onboarding.c
    attempts = (onboarding.follow_up_attempts or 0) + 1
    with engine.begin() as conn:
        if exc.retryable and attempts < MAX_FOLLOW_UP_ATTEMPTS:
            delay = min(3600, 30 * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            conn.execute(
                sa.update(whatsapp_onboarding).where(o.id == onboarding.id).values(
                    follow_up_status="waiting", follow_up_next_at=utcnow() + timedelta(seconds=delay),
                    error_code=str(exc.code)[:32] if exc.code is not None else None, error_message=f"retrying: {exc}"[:1000], updated_at=utcnow(),
                )
            )
            report.outcome, report.error = "retry", str(exc)
        else:
            fail_onboarding(conn, onboarding.id, exc.code, str(exc))
            conn.execute(sa.update(whatsapp_onboarding).where(o.id == onboarding.id).values(follow_up_status="failed"))
            report.outcome, report.error = "failed", str(exc)
    log.warning("onboarding %s follow-up %s: %s", onboarding.id, report.outcome, report.error)
    return report
