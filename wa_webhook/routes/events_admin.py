"""Admin API of event push: set, rotate, disable an organization's endpoint, see its state,
replay events. ``Authorization: Bearer <ADMIN_API_TOKEN>`` (:func:`~wa_webhook.routes.admin.require_admin`).
The logic is :mod:`wa_core.events.push`; 404 for an unknown organization or endpoint, 422 for a bad URL."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wa_core.events import push
from wa_core.organizations import resolve_organization
from wa_core.timebounds import UtcTime
from wa_webhook.routes.admin import AdminDep

router = APIRouter(prefix="/api/admin/whatsapp/events", tags=["admin"])


class EndpointRequest(BaseModel):
    """The endpoint URL (the secret is generated and returned once)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000)


class ReplayRequest(BaseModel):
    """One event, or a filter (``occurred_at`` in [since, until), types); ``everything: true``
    to replay every event kept (an empty request is refused with 422, like dead letters)."""

    model_config = ConfigDict(extra="forbid")
    event_id: uuid.UUID | None = None
    since: UtcTime | None = None
    until: UtcTime | None = None
    types: list[str] = Field(default_factory=list, max_length=50)
    everything: bool = False

    @model_validator(mode="after")
    def _something(self) -> "ReplayRequest":
        if not (self.event_id or self.since or self.until or self.types or self.everything):
            raise ValueError("name an event_id, a time window (since/until) or types, or set everything: true")
        return self


def _run(request: Request, org: str, change) -> Any:
    try:
        with request.app.state.api_engine().begin() as conn:
            return change(conn, resolve_organization(conn, org).id)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.put("/{org}/endpoint")
def set_endpoint(request: Request, org: str, body: EndpointRequest, _: AdminDep) -> dict[str, Any]:
    """Set (or replace and re-enable) the endpoint; answers the new secret once."""
    cipher = request.app.state.cipher
    return {"secret": _run(request, org, lambda conn, oid: push.set_endpoint(conn, cipher, oid, body.url))}


@router.post("/{org}/endpoint/rotate")
def rotate(request: Request, org: str, _: AdminDep) -> dict[str, Any]:
    """A new secret; the previous one keeps signing for 24 h."""
    cipher = request.app.state.cipher
    return {"secret": _run(request, org, lambda conn, oid: push.rotate_secret(conn, cipher, oid))}


@router.post("/{org}/endpoint/disable")
def disable(request: Request, org: str, _: AdminDep) -> dict[str, Any]:
    """Stop pushing (events keep accumulating)."""
    _run(request, org, lambda conn, oid: push.disable_endpoint(conn, oid))
    return {"enabled": False}


@router.get("/{org}/endpoint")
def status(request: Request, org: str, _: AdminDep) -> dict[str, Any]:
    """The endpoint's state (never its secret)."""
    return _run(request, org, push.endpoint_status)


@router.post("/{org}/replay")
def replay(request: Request, org: str, body: ReplayRequest, _: AdminDep) -> dict[str, Any]:
    """Queue events to be pushed again; answers how many."""
    return {"queued": _run(request, org, lambda conn, oid: push.enqueue_replay(
        conn, oid, event_id=body.event_id, since=body.since, until=body.until, types=body.types))}
