"""Admin API of the webhook explorer: search landed webhooks, trace one, rejected deliveries.

Admin token only (:func:`wa_webhook.routes.admin.require_admin`). The trace shows the raw
body only with ``include_body=true`` and only while retention keeps it. Queries in
:mod:`wa_core.explorer`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from wa_core.explorer.rejections import recent_rejections
from wa_core.explorer.search import MAX_LIMIT, InvalidSearch, WebhookSearch, search_webhooks
from wa_core.explorer.trace import trace_webhook
from wa_core.timebounds import UtcTime
from wa_webhook.routes.admin import PRINTABLE, AdminDep

router = APIRouter(prefix="/api/admin/whatsapp", tags=["admin"])
Id = Annotated[str | None, Query(min_length=1, max_length=255, pattern=PRINTABLE)]


@router.get("/webhooks")
def search(
    request: Request,
    _: AdminDep,
    wamid: Id = None,
    phone_number_id: Id = None,
    wa_id: Id = None,
    user_id: Id = None,
    waba_id: Id = None,
    field: Id = None,
    status: Annotated[list[str], Query()] = [],  # noqa: B006
    error_kind: Annotated[str | None, Query(min_length=1, max_length=64, pattern=PRINTABLE)] = None,
    received_from: UtcTime | None = None,
    received_to: UtcTime | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    """Landed webhooks matching every filter given, newest first (no bodies). Ids are found
    in bodies once processed; ``next_before_id`` pages on. 422 for a malformed filter (also a
    time without a UTC equivalent, e.g. ``9999-12-31T23:59:59-05:00``)."""
    query = WebhookSearch(
        wamid=wamid, phone_number_id=phone_number_id, wa_id=wa_id, user_id=user_id, waba_id=waba_id, field=field,
        status=tuple(status), error_kind=error_kind, received_from=received_from, received_to=received_to,
        before_id=before_id,
    )
    try:
        with request.app.state.api_engine().connect() as conn:
            return search_webhooks(conn, query, limit)
    except InvalidSearch as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/webhooks/{webhook_id}/trace")
def trace(
    request: Request, _: AdminDep, webhook_id: Annotated[int, Path(ge=1, le=2**63 - 1)], include_body: bool = False
) -> dict[str, Any]:
    """Arrival, processing state, each item's outcome, the search keys and the rows written;
    ``include_body=true`` adds the raw body while retention keeps it. 404 for no such webhook."""
    with request.app.state.api_engine().connect() as conn:
        found = trace_webhook(conn, webhook_id, include_body=include_body)
    if found is None:
        raise HTTPException(404, "no such webhook")
    return found


@router.get("/rejected-webhooks")
def rejected(
    request: Request, _: AdminDep, since: UtcTime | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """Deliveries the receiver refused (bad or missing signature, too large) since ``since``
    (default 24 h): counts by reason and the latest records (no bodies are ever stored)."""
    with request.app.state.api_engine().connect() as conn:
        return recent_rejections(conn, since=since, limit=limit)
