"""Admin API for processing controls: pause and resume one organization or one WABA, set an
organization's own caps, list what is in force.

Same authentication as the rest of the admin API (:func:`wa_webhook.routes.admin.require_admin`:
``Authorization: Bearer <ADMIN_API_TOKEN>``). Every change is idempotent (``changed`` says
whether anything changed); 422 for a malformed request or id, 404 for an unknown
organization or WABA. The logic is :mod:`wa_core.processing.controls`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from wa_core.processing import controls
from wa_webhook.routes.admin import PRINTABLE, AdminDep

router = APIRouter(prefix="/api/admin/whatsapp/processing", tags=["admin"])

#: an organization reference: its id or external id (a number is taken as its text)
OrgRef = Annotated[str, Field(min_length=1, max_length=255, pattern=PRINTABLE)] | StrictInt


class PauseRequest(BaseModel):
    """What to pause or resume: exactly one of ``organization`` (id or external id) and
    ``waba_id`` (digits, as a string or a number)."""

    model_config = ConfigDict(extra="forbid")

    organization: OrgRef | None = None
    waba_id: Annotated[str, Field(max_length=64)] | StrictInt | None = None
    reason: str | None = Field(default=None, max_length=1000, description="pause only: why (shown in the controls list)")


class CapsRequest(BaseModel):
    """An organization's own caps; a field left out is unchanged, ``null`` = the global setting
    (``PROCESSING_ORG_*``), 0 = no cap for this organization."""

    model_config = ConfigDict(extra="forbid")

    organization: OrgRef
    max_in_flight: StrictInt | None = Field(default=None, ge=0, le=controls.MAX_CAP)
    webhooks_per_minute: StrictInt | None = Field(default=None, ge=0, le=controls.MAX_CAP)


def _run(request: Request, change) -> Any:
    """``change(conn)`` in one transaction, its errors as 422 / 404."""
    try:
        with request.app.state.api_engine().begin() as conn:
            return change(conn)
    except ValueError as exc:  # InvalidControl, InvalidOrganization
        raise HTTPException(422, str(exc)) from exc
    except LookupError as exc:  # UnknownWaba, UnknownOrganization
        raise HTTPException(404, str(exc)) from exc


def _pause(request: Request, body: PauseRequest, paused: bool) -> dict[str, Any]:
    if not paused and body.reason is not None:
        raise HTTPException(422, "a resume takes no reason")
    state = _run(
        request,
        lambda conn: controls.set_paused(
            conn, organization=body.organization, waba_id=body.waba_id, paused=paused, reason=body.reason
        ),
    )
    return state.as_dict()


@router.post("/pause")
def pause(request: Request, _: AdminDep, body: PauseRequest) -> dict[str, Any]:
    """Pause one organization's lane or one WABA: its webhooks keep landing and wait.

    Answers the control's state (``paused``, ``paused_at``, ``changed``, ``waiting`` rows)."""
    return _pause(request, body, True)


@router.post("/resume")
def resume(request: Request, _: AdminDep, body: PauseRequest) -> dict[str, Any]:
    """Resume a paused organization or WABA: its waiting webhooks become claimable, oldest first."""
    return _pause(request, body, False)


@router.put("/caps")
def caps(request: Request, _: AdminDep, body: CapsRequest) -> dict[str, Any]:
    """Set an organization's own caps (see :class:`CapsRequest`); answers its caps now."""
    given = {name: getattr(body, name) for name in ("max_in_flight", "webhooks_per_minute") if name in body.model_fields_set}
    return _run(request, lambda conn: controls.set_caps(conn, body.organization, **given)).as_dict()


@router.get("/controls")
def list_controls(request: Request, _: AdminDep) -> dict[str, Any]:
    """The controls in force (paused organizations and WABAs, organizations' own caps) and the
    global settings they override."""
    settings = request.app.state.settings
    with request.app.state.api_engine().connect() as conn:
        found = controls.list_controls(conn)
    return {
        "source": "live",
        "global": {
            "max_in_flight": settings.processing_org_max_in_flight,
            "webhooks_per_minute": settings.processing_org_webhooks_per_minute,
            "shards": settings.processing_shards,
        },
        **found,
    }
