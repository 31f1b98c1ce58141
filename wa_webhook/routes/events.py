"""The event feed's pull API: ``GET /api/v1/whatsapp/events`` with the organization's JWT.

``after`` is the last cursor the caller has (0 = from the oldest event kept), ``types`` a
comma-separated list of event types (``message.*`` matches a prefix), ``limit`` at most
1000, ``wait`` seconds to long-poll (≤ 30) when nothing is there yet: the answer comes as soon
as an event commits (LISTEN/NOTIFY, :mod:`wa_webhook.events_wait`), or empty after ``wait``.
The answer: ``{"events": [...], "next_cursor": n}``; pass ``next_cursor`` as ``after`` next time.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request

from wa_core.events.feed import MAX_LIMIT, event_json, last_cursor, read_events
from wa_webhook.deps import CallerDep

router = APIRouter(prefix="/api/v1/whatsapp", tags=["events"])

#: the longest long-poll (seconds)
MAX_WAIT_SECONDS = 30.0


def parse_types(types: str | None) -> list[str]:
    """``types`` split on commas; 422 for a name that cannot be an event type."""
    names = [t.strip() for t in (types or "").split(",") if t.strip()]
    for name in names:
        if len(name) > 64 or not all(ch.isalnum() or ch in "._*" for ch in name) or ("*" in name and not name.endswith(".*")):
            raise HTTPException(422, f"not an event type: {name[:64]!r}")
    return names


@router.get("/events")
async def list_events(
    request: Request,
    caller: CallerDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="last cursor seen (0: from the start)")] = 0,
    types: Annotated[str | None, Query(max_length=1000, description="comma-separated types; message.* for a prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="long-poll seconds when nothing is there")] = 0,
) -> dict[str, Any]:
    """The organization's events after ``after``, in cursor order (see the module docstring)."""
    names = parse_types(types)
    engine = request.app.state.api_engine()
    waiter = request.app.state.event_waiter

    def read() -> tuple[list[dict[str, Any]], int]:
        with engine.connect() as conn:
            # the highest committed cursor first: every event up to it has committed (cursors
            # commit in order), so a filtered read that found fewer than ``limit`` may move past
            # the events it skipped, and the consumer does not scan them again
            last = last_cursor(conn, caller.organization_id)
            rows = read_events(conn, caller.organization_id, after, types=names, limit=limit, upto=last)
            events = [event_json(r) for r in rows]
        if len(events) == limit:
            return events, events[-1]["cursor"]
        return events, max(after, last)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    event = waiter.register(caller.organization_id) if wait else None
    try:
        while True:
            events, next_cursor = await anyio.to_thread.run_sync(read)
            remaining = deadline - loop.time()
            if events or event is None or remaining <= 0:
                break
            await waiter.wait(event, remaining)
    finally:
        if event is not None:
            waiter.release(caller.organization_id, event)
    return {"events": events, "next_cursor": next_cursor}
