"""The read API: an organization's conversations, their messages and its contacts.

Organization-scoped with the organization's JWT (:mod:`wa_webhook.deps`): another
organization's conversation or contact ids answer 404, as unknown ones do. Queries in
:mod:`wa_core.read`; pagination is by opaque keyset cursors (``next_cursor``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from wa_core.read.conversations import MAX_LIMIT, BadCursor, NotFound, get_contact, list_conversations
from wa_core.read.messages import list_messages
from wa_webhook.deps import CallerDep

router = APIRouter(prefix="/api/v1/whatsapp", tags=["read"])
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=512)]


def _read(request: Request, query, *args, **kwargs) -> dict[str, Any]:
    try:
        with request.app.state.api_engine().connect() as conn:
            return query(conn, *args, **kwargs)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except BadCursor as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/conversations")
def conversations(request: Request, caller: CallerDep, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    """Conversations (per contact or group thread), most recent first: last message, unread
    inbound count (inbound messages newer than the thread's last outbound one), current
    status of the last outbound message. ``cursor``: the previous page's ``next_cursor``."""
    return _read(request, list_conversations, caller.organization_id, limit=limit, cursor=cursor)


@router.get("/conversations/{conversation_id}/messages")
def conversation_messages(
    request: Request,
    caller: CallerDep,
    conversation_id: Annotated[str, Path(max_length=300)],
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """A conversation's messages, newest first, with statuses, reactions, revisions and media
    links. 404 for a conversation with no message in the caller's organization."""
    return _read(request, list_messages, caller.organization_id, conversation_id, limit=limit, cursor=cursor)


@router.get("/contacts/{contact_id}")
def contact(request: Request, caller: CallerDep, contact_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    """One contact and its conversation id; 404 when it is not the caller's organization's."""
    return _read(request, get_contact, caller.organization_id, contact_id)
