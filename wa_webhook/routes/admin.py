"""Admin API for operators: status, failed and dead webhooks, replaying dead letters, WABAs.

Every route needs ``Authorization: Bearer <ADMIN_API_TOKEN>``; with no token configured the
admin API is disabled (503); any other bearer token, an organization's JWT included, gets
403. ``failed-webhooks`` and the actions read and write the live tables (freshness matters
there); ``status`` combines dashboard snapshots with live tables and says which section
comes from where (:mod:`wa_core.reporting.admin_status`).
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from wa_core.db.schema import as_utc, whatsapp_webhook_logs as logs
from wa_core.dead_letters import DeadLetterSelection, EmptySelection, replay_dead_letters
from wa_core.meta.signature import tokens_equal
from wa_core.organizations import InvalidOrganization, UnknownOrganization, resolve_organization
from wa_core.reporting.admin_status import AdminStatus, admin_status, failed_rows
from wa_core.timebounds import UtcTime

router = APIRouter(prefix="/api/admin/whatsapp", tags=["admin"])


def require_admin(request: Request) -> None:
    """Check the admin bearer token (constant time); 401 without it (no header, another scheme, or
    only blanks after ``Bearer``), 403 if wrong, 503 if unset."""
    expected = request.app.state.settings.admin_api_token
    if expected is None or not expected.get_secret_value():
        raise HTTPException(503, "admin API is disabled: ADMIN_API_TOKEN is not set")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:  # "Bearer" and blanks carries no token: 401, as /metrics
        raise HTTPException(401, "admin bearer token required", headers={"WWW-Authenticate": "Bearer"})
    if not tokens_equal(token, expected.get_secret_value()):
        raise HTTPException(403, "not an admin token")


AdminDep = Annotated[None, Depends(require_admin)]


def _engine(request: Request) -> sa.Engine:
    return request.app.state.api_engine()


@router.get("/status", response_model=AdminStatus)
def whatsapp_status(
    request: Request,
    _: AdminDep,
    org: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="organization id or external id; omitted = all organizations"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="failed/dead webhooks listed (counts cover all)")] = 50,
) -> AdminStatus:
    """Status, onboarding timeline, token health, connections, failed webhooks and backlog.

    ``status``/``timeline``/``token_health`` are the dashboard snapshots (``source:
    materialised``, with ``computed_at`` and ``age_seconds``; ``materialised: null`` and a
    hint when ``refresh_dashboards`` has not run yet). ``connections``, ``failed_webhooks``
    and ``backlog`` are read from the live tables at ``generated_at`` (``source: live``).
    404 for an unknown organization, 422 for a reference that cannot be one.
    """
    engine = _engine(request)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one consistent view of the live tables
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            return admin_status(conn, org, limit=limit, expiring_soon_days=request.app.state.settings.token_expiring_soon_days)
        except InvalidOrganization as exc:
            raise HTTPException(422, str(exc)) from exc
        except UnknownOrganization as exc:
            raise HTTPException(404, str(exc)) from exc


#: no control characters (Postgres text refuses NUL; none belongs in an id or an error kind)
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


def _organization_ref(conn: sa.Connection, ref: str) -> str:
    """The id of the organization ``ref`` names (id or external id): 422 malformed, 404 unknown."""
    try:
        return str(resolve_organization(conn, ref).id)
    except InvalidOrganization as exc:
        raise HTTPException(422, str(exc)) from exc
    except UnknownOrganization as exc:
        raise HTTPException(404, str(exc)) from exc


class ReplayRequest(BaseModel):
    """Which dead webhooks to replay; filters combine with AND (at least one, or ``everything``)."""

    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(default_factory=list, max_length=10000)
    received_from: UtcTime | None = None
    received_to: UtcTime | None = None
    error_kind: str | None = Field(default=None, min_length=1, max_length=64, pattern=PRINTABLE)
    organization: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=PRINTABLE, description="organization id or external id"
    )
    everything: bool = False
    dry_run: bool = False


@router.get("/failed-webhooks")
def failed_webhooks(
    request: Request,
    _: AdminDep,
    status: Annotated[list[str], Query()] = ["failed", "dead"],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Counts by state and error kind, and the latest failed/dead webhooks (no bodies);
    ``organization_id`` is the row's lane (:mod:`wa_core.backlog`; null = unrouted)."""
    wanted = tuple(s for s in status if s in ("failed", "dead")) or ("failed", "dead")
    c = logs.c
    columns = [
        c.id, c.received_at, c.status, c.attempts, c.next_attempt_at, c.error_kind, c.last_error, c.fields,
        c.items_received, c.items_processed, c.items_failed, c.items_dead, c.replay_count, c.body.is_(None).label("body_purged"),
    ]
    with _engine(request).connect() as conn:
        counts, latest = failed_rows(conn, columns, statuses=wanted, limit=limit)
    webhooks = []
    for row in latest:
        item = dict(row._mapping)
        item["organization_id"] = item.pop("lane")
        for name in ("received_at", "next_attempt_at"):  # UTC with its offset on both databases
            item[name] = as_utc(item[name]).isoformat() if item[name] is not None else None
        webhooks.append(item)
    return {"source": "live", "counts": [count.model_dump() for count in counts], "webhooks": webhooks}


@router.post("/webhooks/replay")
def replay(request: Request, _: AdminDep, body: ReplayRequest) -> dict[str, Any]:
    """Put the selected dead webhooks back in line (the processing sensor picks them up).

    422 for an empty selection or a malformed filter, 404 for an unknown organization."""
    try:
        with _engine(request).begin() as conn:
            selection = DeadLetterSelection(
                ids=body.ids,
                received_from=body.received_from,
                received_to=body.received_to,
                error_kind=body.error_kind,
                organization=_organization_ref(conn, body.organization) if body.organization else None,
                everything=body.everything,
            )
            ids = replay_dead_letters(conn, selection, dry_run=body.dry_run)
    except EmptySelection as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"dry_run": body.dry_run, "count": len(ids), "ids": ids}


class AssignRequest(BaseModel):
    """The organization (id or external id) an unclaimed WABA belongs to."""

    organization: str = Field(min_length=1, max_length=255, pattern=PRINTABLE)


@router.post("/wabas/{waba_id}/assign")
def assign(waba_id: Annotated[str, Path(pattern=r"^[0-9]{1,64}$")], request: Request, _: AdminDep, body: AssignRequest) -> dict[str, Any]:
    """Bind an unclaimed WABA to an organization and replay its waiting ``PARTNER_ADDED``."""
    from wa_core.bindings import BindingConflict
    from wa_core.dead_letters import assign_waba

    try:
        with _engine(request).begin() as conn:
            return assign_waba(conn, waba_id, _organization_ref(conn, body.organization))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc
    except BindingConflict as exc:
        raise HTTPException(409, str(exc)) from exc
