"""The web app's onboarding API (bearer JWT per organization).

- ``GET  /api/v1/whatsapp/onboarding-url``: start an onboarding (tracking code, 24 h)
- ``POST /api/v1/whatsapp/onboarding/{tracking_code}/session``: what the page posts when
  Embedded Signup ends; the code is exchanged at once (it lives 30 seconds)
- ``GET  /api/v1/whatsapp/onboarding/{tracking_code}``: what the page polls
- ``GET  /api/v1/whatsapp/check-connection``: the organization's connections and numbers, with their health
- ``DELETE /api/v1/whatsapp/connections/{id}``: disconnect
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from wa_core.cache import onboarding_cache
from wa_core.db.schema import as_utc, utcnow, whatsapp_configs, whatsapp_connections
from wa_core.meta.graph.errors import GraphError
from wa_core.onboarding.service import (
    OnboardingError,
    SessionInput,
    begin_session,
    create_onboarding,
    expire_due,
    fail_onboarding,
    get_onboarding,
    launch_parameters,
    phone_numbers_view,
    status_view,
    store_exchange,
    token_can_manage,
)
from wa_webhook.deps import CallerDep
from wa_core.meta.crypto import TokenCryptoError
from wa_core.token_health import mark_from_graph_error
from wa_core.reporting.number_health import health_of, number_health, waba_health

log = logging.getLogger("wa_webhook.onboarding")

router = APIRouter(prefix="/api/v1/whatsapp", tags=["onboarding"])


def _error(exc: OnboardingError) -> HTTPException:
    return HTTPException(exc.status, {"code": exc.code, "message": exc.message})


class SessionBody(BaseModel):
    """The ``WA_EMBEDDED_SIGNUP`` outcome and the ``FB.login`` code, as the page posts them."""

    event: str = Field(default="FINISH", max_length=64, description="FINISH, FINISH_ONLY_WABA, FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING or CANCEL")
    code: str | None = Field(default=None, max_length=4096)
    waba_id: str | None = Field(default=None, max_length=64, pattern=r"^[0-9]+$")  # ASCII digits only
    phone_number_id: str | None = Field(default=None, max_length=64, pattern=r"^[0-9]+$")
    business_id: str | None = Field(default=None, max_length=64, pattern=r"^[0-9]+$")
    current_step: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=1000)
    error_id: str | None = Field(default=None, max_length=64)


@router.get("/onboarding-url")
def onboarding_url(request: Request, caller: CallerDep, coexistence: bool = False) -> dict[str, Any]:
    """Create an onboarding and return where and how to launch Embedded Signup."""
    settings = request.app.state.settings
    with request.app.state.api_engine().begin() as conn:
        row = create_onboarding(conn, caller.organization_id, settings, user_agent=request.headers.get("user-agent"), ip=request.client.host if request.client else None)
    ttl = settings.onboarding_ttl_seconds
    onboarding_cache(request.app).remember(row.tracking_code, {"organization_id": str(caller.organization_id), "status": "pending"}, ttl)
    params = launch_parameters(settings, row.tracking_code, coexistence=coexistence)
    params["extras_tracking_note"] = "Meta returns no tracking code: post the session to the session URL below"
    return {
        "tracking_code": row.tracking_code,
        "expires_at": as_utc(row.expires_at).isoformat(),
        "session_url": f"/api/v1/whatsapp/onboarding/{row.tracking_code}/session",
        "status_url": f"/api/v1/whatsapp/onboarding/{row.tracking_code}",
        **params,
    }


@router.post("/onboarding/{tracking_code}/session")
def post_session(tracking_code: str, body: SessionBody, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Record the Embedded Signup outcome; on a finish, exchange the code and store the token.

    Errors: 404 unknown or foreign tracking code, 410 expired, 409 already used/cancelled or
    WABA bound elsewhere, 422 incomplete, 502 when Meta refuses the code (Meta's code and
    message are returned and kept on the onboarding).
    """
    state = request.app.state
    engine = state.api_engine()
    session = SessionInput(
        event=body.event.strip().upper(), code=body.code, waba_id=body.waba_id, phone_number_id=body.phone_number_id,
        business_id=body.business_id, current_step=body.current_step, error_message=body.error_message, error_id=body.error_id,
        data=body.model_dump(exclude={"code"}, exclude_none=True),
    )
    try:
        with engine.begin() as conn:
            row = begin_session(conn, caller.organization_id, tracking_code, session)
    except OnboardingError as exc:
        if exc.code == "onboarding_expired":
            with engine.begin() as conn:
                onboarding_cache(request.app).forget(expire_due(conn, organization_id=caller.organization_id))
        raise _error(exc) from exc
    if row.status == "cancelled":
        log.info("onboarding cancelled at step %s", row.cancel_step or "(error)")
    else:
        try:
            with state.graph() as graph:
                token = graph.exchange_code(session.code)
                if not token.get("access_token"):
                    raise OnboardingError(502, "code_exchange_failed", "Meta returned no access token")
                if not token_can_manage(graph.debug_token(token["access_token"]), session.waba_id):
                    raise OnboardingError(403, "waba_not_shared", "the WhatsApp Business Account you posted was not shared in this signup")
            with engine.begin() as conn:
                store_exchange(conn, row, token, state.cipher.encrypt)
        except GraphError as exc:
            with engine.begin() as conn:
                fail_onboarding(conn, row.id, exc.code, f"code exchange failed: {exc.message}")
            raise HTTPException(502, {"code": "code_exchange_failed", "meta_code": exc.code, "message": exc.message}) from exc
        except OnboardingError as exc:
            with engine.begin() as conn:
                fail_onboarding(conn, row.id, exc.code, exc.message)
            raise _error(exc) from exc
        log.info("onboarding token exchanged; follow-up queued for Dagster")
    with engine.connect() as conn:
        view = status_view(conn, get_onboarding(conn, caller.organization_id, tracking_code), expiring_soon_days=request.app.state.settings.token_expiring_soon_days)
    onboarding_cache(request.app).remember(tracking_code, {"organization_id": str(caller.organization_id), "status": view["status"]}, state.settings.onboarding_ttl_seconds)
    return view


@router.get("/onboarding/{tracking_code}")
def onboarding_status(tracking_code: str, request: Request, caller: CallerDep) -> dict[str, Any]:
    """The onboarding's status, connection, numbers and failure reason (404 if not yours)."""
    with request.app.state.api_engine().connect() as conn:
        try:
            return status_view(conn, get_onboarding(conn, caller.organization_id, tracking_code), expiring_soon_days=request.app.state.settings.token_expiring_soon_days)
        except OnboardingError as exc:
            raise _error(exc) from exc


@router.get("/check-connection")
def check_connection(request: Request, caller: CallerDep) -> dict[str, Any]:
    """The organization's WABA connections and their phone numbers, each token's state now
    (:func:`wa_core.token_health.current_state`), each WABA's health (review decision,
    capabilities, open Meta account alerts, templates per status) and each number's health
    (messaging limit, throughput, name/username decisions, last PIN event), as the WABA-family
    webhooks last reported (:mod:`wa_core.reporting.number_health`; null before any)."""
    soon_days = request.app.state.settings.token_expiring_soon_days
    with request.app.state.api_engine().connect() as conn:
        connections = conn.execute(
            sa.select(whatsapp_connections).where(whatsapp_connections.c.organization_id == caller.organization_id).order_by(whatsapp_connections.c.created_at)
        ).all()
        wabas = [c.waba_id for c in connections]
        health, numbers_health = waba_health(conn, wabas), number_health(conn, wabas)
        out = []
        for c in connections:
            numbers = phone_numbers_view(conn, c.id, expiring_soon_days=soon_days)
            for n in numbers:
                found = health_of(numbers_health, c.waba_id, n["display_phone_number"])
                n["health"] = found.model_dump(mode="json") if found else None
            out.append(
                {
                    "id": str(c.id), "waba_id": c.waba_id, "status": c.status, "status_reason": c.status_reason,
                    "connected_at": as_utc(c.connected_at).isoformat() if c.connected_at else None,
                    "health": health[c.waba_id].model_dump(mode="json"),
                    "phone_numbers": numbers,
                }
            )
    return {"connected": any(c["status"] == "active" for c in out), "connections": out}


@router.delete("/connections/{connection_id}")
def disconnect(connection_id: uuid.UUID, request: Request, caller: CallerDep) -> dict[str, Any]:
    """Unsubscribe the app from the WABA and mark the connection inactive (history is kept).

    The Graph call is best effort: a token Meta no longer accepts does not prevent the
    disconnect; the answer says whether Meta confirmed it.
    """
    state = request.app.state
    engine = state.api_engine()
    with engine.connect() as conn:
        c = conn.execute(
            sa.select(whatsapp_connections).where(whatsapp_connections.c.id == connection_id, whatsapp_connections.c.organization_id == caller.organization_id)
        ).first()
    if c is None:
        raise HTTPException(404, {"code": "connection_not_found", "message": "no such connection for your organization"})
    unsubscribed, meta_error = False, None
    if c.business_token_encrypted:
        try:
            with state.graph() as graph:
                unsubscribed = graph.unsubscribe_app(c.waba_id, state.cipher.decrypt(c.business_token_encrypted, c.id))
        except TokenCryptoError:
            meta_error = {"code": "token_unreadable", "message": "the stored token could not be decrypted (key rotation?)"}
        except GraphError as exc:
            meta_error = {"code": exc.code, "message": exc.message}
            mark_from_graph_error(engine, c.id, exc)  # a dead token (190) or missing permission: say so at once
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.update(whatsapp_connections).where(whatsapp_connections.c.id == c.id).values(
                status="inactive", status_reason="disconnected by the organization", disconnected_at=now,
                disconnected_by=(caller.subject or caller.organization_external_id)[:255], updated_at=now,
            )
        )
        conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.connection_id == c.id).values(status="disconnected", updated_at=now))
    return {"id": str(c.id), "status": "inactive", "unsubscribed": unsubscribed, "meta_error": meta_error}
