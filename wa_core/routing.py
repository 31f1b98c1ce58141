"""The routing hint the receiver stores with each landed webhook: the WABA id of its envelope.

The receiver cannot know a webhook's organization (that needs the bindings), but every
WhatsApp webhook names its WABA in ``entry[].id`` (Meta: Webhooks overview, "Payload":
``{"object": "whatsapp_business_account", "entry": [{"id": "<WABA_ID>", "changes": [...]}]}``).
Processing claims webhooks fairly per organization by joining that id to the WABA's binding,
so a flood from one organization cannot starve the others.

Reading the hint must stay far cheaper than the insert: it looks at the first 4 KiB with a
regular expression (Meta sends ``object`` then ``entry`` first), falls back to a full JSON
parse only for small bodies, and gives ``None`` when it cannot tell, which only puts the row
in the shared "unrouted" lane; nothing is refused or lost because of it.
"""

from __future__ import annotations

import json
import re

_HEAD_BYTES = 4096
_JSON_FALLBACK_MAX_BYTES = 64 * 1024
#: the envelope as Meta writes it: ``{"object": "...", "entry": [{"id": "..."`` at the very start
#: (anchored, so an ``entry`` nested anywhere else is never taken for the envelope's)
_ENTRY_ID = re.compile(
    rb'\A\s*\{\s*(?:"object"\s*:\s*"[^"\\]*"\s*,\s*)?"entry"\s*:\s*\[\s*\{\s*"id"\s*:\s*"([0-9]{1,64})"'
)
_ID = re.compile(r"[0-9]{1,64}")


def routing_waba_id(body: bytes) -> str | None:
    """The first ``entry[].id`` of a webhook body (ASCII digits, at most 64), or ``None``.

    Never raises: a body that is not JSON, not an object, or has no digit id gives ``None``.
    """
    match = _ENTRY_ID.match(body[:_HEAD_BYTES])
    if match:
        return match.group(1).decode("ascii")
    if len(body) > _JSON_FALLBACK_MAX_BYTES:
        return None
    try:
        envelope = json.loads(body)
        entry = envelope["entry"][0]["id"] if isinstance(envelope, dict) else None
    except Exception:  # not JSON, not the envelope we know: the row stays unrouted
        return None
    return entry if isinstance(entry, str) and _ID.fullmatch(entry) else None
