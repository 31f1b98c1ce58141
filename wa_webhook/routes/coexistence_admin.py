"""Admin API for coexistence syncs: a number's contact and history sync state, and an
operator's re-request where Meta's rules allow it.

Same authentication as the rest of the admin API (:func:`wa_webhook.routes.admin.require_admin`).
The rules are :mod:`wa_core.coexistence_sync` (Meta, "Onboarding WhatsApp Business app users"): refused (409, with
``next_allowed_at`` in UTC, null when only a new onboarding allows it) within 24 h of the
last request, once the 24 h sync window after onboarding has closed, or for a history that
is complete or arriving; Meta's own refusal (e.g. 2593107) is 502 with its message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse

from wa_core.db.schema import as_utc
from wa_webhook.routes.admin import AdminDep

router = APIRouter(prefix="/api/admin/whatsapp/numbers", tags=["admin"])

PhoneNumberId = Annotated[str, Path(pattern=r"^[0-9]{1,64}$")]


@router.get("/{phone_number_id}/syncs")
def list_syncs(phone_number_id: PhoneNumberId, request: Request, _: AdminDep) -> dict[str, Any]:
    """The number's sync rows (``sync_type``, ``status``, ``request_id``, ``requested_at``,
    ``request_count``, ``request_error``, ``progress``, ``last_data_at``, ``completed_at``,
    ``declined_at``, ``declined_reason``, ``stalled_at``, ``updated_at``; times UTC); 404 for
    a number that is not stored."""
    from wa_core.coexistence_sync import UnknownNumber, sync_states

    with request.app.state.api_engine().connect() as conn:
        try:
            return {"phone_number_id": phone_number_id, "syncs": sync_states(conn, phone_number_id)}
        except UnknownNumber as exc:
            raise HTTPException(404, str(exc)) from exc


@router.post("/{phone_number_id}/syncs/{sync_type}/request")
def request_sync(
    phone_number_id: PhoneNumberId, sync_type: Literal["history", "smb_app_state_sync"], request: Request, _: AdminDep
) -> Any:
    """Send ``POST /{phone-number-id}/smb_app_data`` again: 200 ``{outcome: "sent",
    request_id, next_allowed_at}``; 409 when refused by the rules, 502 when Meta refused or
    the call failed (``{outcome, message, next_allowed_at}``); 404 for an unknown or
    non-coexistence number."""
    from wa_core.coexistence_sync import UnknownNumber, rerequest

    state = request.app.state
    try:
        with state.graph() as graph:
            result = rerequest(state.api_engine(), graph, state.cipher, phone_number_id, sync_type)
    except UnknownNumber as exc:
        raise HTTPException(404, str(exc)) from exc
    body = {
        "outcome": result.outcome,
        "message": result.message,
        "request_id": result.request_id,
        "next_allowed_at": as_utc(result.next_allowed_at).isoformat() if result.next_allowed_at else None,
    }
    return JSONResponse(body, status_code={"sent": 200, "refused": 409}.get(result.outcome, 502))
