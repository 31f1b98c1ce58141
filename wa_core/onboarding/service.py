"""Onboarding v2 (Embedded Signup): tracking codes, the session the page posts, status views.

Source: Meta, "Embedded Signup" implementation and "Onboarding customers as a Tech
Provider": the page runs ``FB.login`` and receives a ``code``
(valid for 30 seconds) and a ``WA_EMBEDDED_SIGNUP`` message event (``FINISH``,
``FINISH_ONLY_WABA``, ``FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`` or ``CANCEL``). No tracking
code ever comes back from Meta: the page correlates, by posting to
``/onboarding/{tracking_code}/session``. The backend exchanges the code at once, stores the
business token encrypted and binds the WABA to the organization; the rest (subscribing,
phone numbers, registration, coexistence syncs) is the ``finish_onboarding`` job's.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.bindings import BindingConflict, bind_waba
from wa_core.db.schema import as_utc, utcnow, whatsapp_configs, whatsapp_connections, whatsapp_onboarding
from wa_core.events.outbox import write_events
from wa_core.events.produce import onboarding_event
from wa_core.settings import Settings

FINISH_EVENTS = ("FINISH", "FINISH_ONLY_WABA", "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING")
COEXISTENCE_EVENT = "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING"


class OnboardingError(Exception):
    """A request the onboarding cannot accept; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class SessionInput:
    """What the page posts when Embedded Signup ends (only ``code`` and ``waba_id`` are needed
    for a finish; a cancel carries ``current_step`` or an error)."""

    event: str
    code: str | None = None
    waba_id: str | None = None
    phone_number_id: str | None = None
    business_id: str | None = None
    current_step: str | None = None
    error_message: str | None = None
    error_id: str | None = None
    data: dict[str, Any] | None = None


def create_onboarding(conn: Connection, organization_id: uuid.UUID, settings: Settings, *, user_agent: str | None, ip: str | None) -> Any:
    """Start an onboarding: a random tracking code valid ``ONBOARDING_TTL_SECONDS``; returns the row."""
    now = utcnow()
    row_id = uuid.uuid4()
    conn.execute(
        sa.insert(whatsapp_onboarding).values(
            id=row_id,
            organization_id=organization_id,
            tracking_code=str(uuid.uuid4()),
            status="pending",
            expires_at=now + timedelta(seconds=settings.onboarding_ttl_seconds),
            user_agent=(user_agent or "")[:1000] or None,
            ip_address=(ip or "")[:64] or None,
            created_at=now,
            updated_at=now,
        )
    )
    return conn.execute(sa.select(whatsapp_onboarding).where(whatsapp_onboarding.c.id == row_id)).one()


def launch_parameters(settings: Settings, tracking_code: str, *, coexistence: bool = False) -> dict[str, Any]:
    """The hosted onboarding URL and the ``FB.login`` options for the JavaScript SDK flow.

    ``extras`` follows Meta's ES v4 (``setup: {}``; ``featureType:
    whatsapp_business_app_onboarding`` for coexistence; ``sessionInfoVersion: "3"``).
    """
    extras: dict[str, Any] = {"setup": {}, "sessionInfoVersion": "3"}
    if coexistence:
        extras["featureType"] = "whatsapp_business_app_onboarding"
    query = urlencode({"app_id": settings.meta_app_id or "", "config_id": settings.meta_config_id or "", "extras": json.dumps(extras, separators=(",", ":"))})
    return {
        "onboarding_url": f"{settings.onboarding_hosted_url}?{query}",
        "app_id": settings.meta_app_id,
        "config_id": settings.meta_config_id,
        "graph_api_version": settings.graph_api_version,
        "fb_login_options": {
            "config_id": settings.meta_config_id,
            "response_type": "code",
            "override_default_response_type": True,
            "extras": extras,
        },
    }


def get_onboarding(conn: Connection, organization_id: uuid.UUID, tracking_code: str, *, for_update: bool = False) -> Any:
    """The organization's onboarding with this tracking code. Raises 404 for unknown codes and
    for another organization's (never reveals that it exists)."""
    stmt = sa.select(whatsapp_onboarding).where(
        whatsapp_onboarding.c.tracking_code == tracking_code, whatsapp_onboarding.c.organization_id == organization_id
    )
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise OnboardingError(404, "onboarding_not_found", "no onboarding with this tracking code for your organization")
    return row


def begin_session(conn: Connection, organization_id: uuid.UUID, tracking_code: str, session: SessionInput) -> Any:
    """Validate and record the posted session; returns the onboarding row.

    A cancel is recorded (status ``cancelled`` with the step or error). A finish moves the
    onboarding to ``session_posted`` exactly once. Raises :class:`OnboardingError`: 410 for
    an expired code, 409 for one already used, cancelled or failed, 422 for a finish
    without ``code``/``waba_id`` or an unknown event.
    """
    row = get_onboarding(conn, organization_id, tracking_code, for_update=True)
    now = utcnow()
    if row.status == "expired" or (row.status == "pending" and as_utc(row.expires_at) <= now):
        raise OnboardingError(410, "onboarding_expired", "this onboarding expired; start a new one")
    if row.status != "pending":
        raise OnboardingError(409, f"onboarding_{row.status}", f"this onboarding is already {row.status.replace('_', ' ')}")
    values: dict[str, Any] = {"session_posted_at": now, "updated_at": now, "signup_event": session.event[:64], "signup_data": session.data}
    if session.event == "CANCEL":
        values.update(
            status="cancelled",
            cancel_step=(session.current_step or "")[:64] or None,
            error_code=(session.error_id or "")[:32] or None,
            error_message=(session.error_message or "")[:1000] or None,
        )
    elif session.event in FINISH_EVENTS:
        if not session.code or not session.waba_id:
            raise OnboardingError(422, "session_incomplete", "a finished Embedded Signup must post its code and waba_id")
        values.update(
            status="session_posted",
            waba_id=session.waba_id[:64],
            phone_number_id=(session.phone_number_id or "")[:64] or None,
            business_id=(session.business_id or "")[:64] or None,
            is_coexistence=session.event == COEXISTENCE_EVENT,
        )
    else:
        raise OnboardingError(422, "unknown_event", f"unknown WA_EMBEDDED_SIGNUP event {session.event[:40]!r}")
    conn.execute(sa.update(whatsapp_onboarding).where(whatsapp_onboarding.c.id == row.id).values(**values))
    return conn.execute(sa.select(whatsapp_onboarding).where(whatsapp_onboarding.c.id == row.id)).one()


def expire_due(conn: Connection, *, now=None, organization_id: uuid.UUID | None = None) -> list[str]:
    """Mark pending onboardings past their expiry as ``expired``; returns their tracking codes
    (so the caller removes exactly those cache keys)."""
    o = whatsapp_onboarding.c
    now = now or utcnow()
    condition = sa.and_(o.status == "pending", o.expires_at <= now)
    if organization_id is not None:
        condition = sa.and_(condition, o.organization_id == organization_id)
    expired = conn.execute(
        sa.update(whatsapp_onboarding).where(condition).values(status="expired", updated_at=now).returning(o.tracking_code, o.id, o.organization_id)
    ).all()
    write_events(conn, (onboarding_event(org, oid, "expired", now) for _, oid, org in expired))
    return [code for code, _, _ in expired]


def token_can_manage(debug: dict[str, Any], waba_id: str) -> bool:
    """Whether a business token (its ``debug_token`` data) was granted ``waba_id``.

    Source: Meta, "Manage accounts" / debug_token: ``granular_scopes[].target_ids`` of the
    ``whatsapp_business_management`` scope list the WABAs shared in the signup. A page can
    post any ``waba_id``; only one the token can manage may be bound.
    """
    if not debug.get("is_valid"):
        return False
    for scope in debug.get("granular_scopes") or []:
        if isinstance(scope, dict) and scope.get("scope") == "whatsapp_business_management":
            return str(waba_id) in {str(t) for t in scope.get("target_ids") or []}
    return False


def fail_onboarding(conn: Connection, onboarding_id: uuid.UUID, code: str | int | None, message: str) -> None:
    """Mark an onboarding failed with Meta's (or our) error code and message."""
    now = utcnow()
    failed = conn.execute(
        sa.update(whatsapp_onboarding)
        .where(whatsapp_onboarding.c.id == onboarding_id)
        .values(status="failed", error_code=str(code)[:32] if code is not None else None, error_message=message[:1000], updated_at=now)
        .returning(whatsapp_onboarding.c.organization_id)
    ).scalars().all()
    error_code = str(code)[:32] if code is not None else None
    write_events(conn, (onboarding_event(org, onboarding_id, "failed", now, error_code=error_code) for org in failed))


def store_exchange(conn: Connection, onboarding: Any, token: dict[str, Any], encrypt) -> uuid.UUID:
    """Bind the WABA to the organization and store the business token encrypted.

    ``token`` is the code exchange's JSON (``access_token``, optional ``expires_in`` seconds);
    ``encrypt(plaintext, row_id)`` encrypts with the connection's id as associated data.
    A WABA bound to another organization raises :class:`OnboardingError` 409. Returns the
    connection id. The connection stays ``awaiting_confirmation`` until ``PARTNER_ADDED``.
    """
    now = utcnow()
    try:
        connection_id = bind_waba(conn, onboarding.organization_id, onboarding.waba_id, owner_business_id=onboarding.business_id)
    except BindingConflict as exc:
        if not _release_stale_binding(conn, onboarding.waba_id):
            raise OnboardingError(409, "waba_taken", "this WhatsApp Business Account is connected to another organization") from exc
        connection_id = bind_waba(conn, onboarding.organization_id, onboarding.waba_id, owner_business_id=onboarding.business_id)
    expires_in = token.get("expires_in")
    expires_at = now + timedelta(seconds=int(expires_in)) if isinstance(expires_in, (int, float)) and expires_in > 0 else None
    current = conn.execute(sa.select(whatsapp_connections.c.status).where(whatsapp_connections.c.id == connection_id)).scalar_one()
    values: dict[str, Any] = {
        "business_token_encrypted": encrypt(str(token["access_token"]), connection_id),
        "token_obtained_at": now,
        "token_expires_at": expires_at,
        "updated_at": now,
    }
    if current in ("inactive", "deleted", "offboarded", "disabled"):
        values.update(status="awaiting_confirmation", status_reason="reconnected by Embedded Signup")  # reuse the row
    conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == connection_id).values(**values))
    conn.execute(
        sa.update(whatsapp_onboarding)
        .where(whatsapp_onboarding.c.id == onboarding.id)
        .values(status="token_exchanged", token_exchanged_at=now, connection_id=connection_id, follow_up_status="waiting", updated_at=now)
    )
    return connection_id


def _release_stale_binding(conn: Connection, waba_id: str) -> bool:
    """Free a WABA bound to another organization when that binding is dead: disconnected,
    deleted, or never confirmed by Meta. The caller's token has just proved that Meta shared
    the WABA with it. The old connection's history stays with the old organization; its row
    and numbers move to the new one. Returns True when released."""
    c = whatsapp_connections.c
    row = conn.execute(sa.select(whatsapp_connections).where(c.waba_id == waba_id)).first()
    if row is None or not (row.status in ("inactive", "deleted") or (row.status == "awaiting_confirmation" and row.connected_at is None)):
        return False
    conn.execute(sa.delete(whatsapp_configs).where(whatsapp_configs.c.connection_id == row.id))
    conn.execute(sa.update(whatsapp_onboarding).where(whatsapp_onboarding.c.connection_id == row.id).values(connection_id=None))
    conn.execute(sa.delete(whatsapp_connections).where(c.id == row.id))
    return True


def phone_numbers_view(conn: Connection, connection_id: uuid.UUID, *, expiring_soon_days: float = 7.0) -> list[dict[str, Any]]:
    """A connection's phone numbers as the API shows them: status, and ``token_health``, the
    token's state now (:func:`wa_core.token_health.current_state`, ``expiring_soon_days`` =
    ``TOKEN_EXPIRING_SOON_DAYS``; ``not_checked`` before the first check)."""
    from wa_core.token_health import current_state

    now, soon = utcnow(), timedelta(days=expiring_soon_days)
    cfg = whatsapp_configs.c
    return [
        {
            "phone_number_id": n.phone_number_id,
            "display_phone_number": n.display_phone_number,
            "verified_name": n.verified_name,
            "is_coexistence": n.is_coexistence,
            "status": n.status,
            "token_health": current_state(n.token_health, n.token_expires_at, now, soon),
            "token_expires_at": as_utc(n.token_expires_at).isoformat() if n.token_expires_at else None,
        }
        for n in conn.execute(sa.select(whatsapp_configs).where(cfg.connection_id == connection_id).order_by(cfg.phone_number_id))
    ]


def status_view(conn: Connection, onboarding: Any, *, expiring_soon_days: float = 7.0) -> dict[str, Any]:
    """What the page polls: the onboarding's state, its connection and numbers (see
    :func:`phone_numbers_view`), the error."""
    connection = None
    numbers: list[dict[str, Any]] = []
    if onboarding.connection_id is not None:
        c = conn.execute(sa.select(whatsapp_connections).where(whatsapp_connections.c.id == onboarding.connection_id)).first()
        if c is not None:
            connection = {"id": str(c.id), "waba_id": c.waba_id, "status": c.status, "status_reason": c.status_reason}
            numbers = phone_numbers_view(conn, c.id, expiring_soon_days=expiring_soon_days)
    error = None
    if onboarding.status in ("failed", "cancelled") or onboarding.follow_up_status == "failed":
        error = {"code": onboarding.error_code, "message": onboarding.error_message, "step": onboarding.cancel_step}
    current = onboarding.status
    if current == "pending" and as_utc(onboarding.expires_at) <= utcnow():
        current = "expired"  # the nightly schedule records it; the page should know now
    return {
        "tracking_code": onboarding.tracking_code,
        "status": current,
        "follow_up": onboarding.follow_up_status,
        "confirmed": onboarding.confirmed_at is not None,
        "is_coexistence": onboarding.is_coexistence,
        "expires_at": as_utc(onboarding.expires_at).isoformat(),
        "connection": connection,
        "phone_numbers": numbers,
        "error": error,
    }
