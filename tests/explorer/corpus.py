"""Bodies for the read API and explorer tests: a small thread history built from Meta's shapes."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA

CUSTOMER, OTHER = "15550000101", "15550000103"


def envelope(value: dict[str, Any], field: str = "messages", waba: str = ACME_WABA) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{"value": value, "field": field}]}]}).encode()


def _value(phone: str, **items: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550000001", "phone_number_id": phone}, **items}


def inbound(wamid: str, at: int, sender: str = CUSTOMER, phone: str = ACME_PHONE, waba: str = ACME_WABA, **extra: Any) -> bytes:
    message = {"from": sender, "id": wamid, "timestamp": str(at), "type": "text", "text": {"body": f"hello {wamid[-3:]}"}}
    message.update(extra)
    contacts = [{"profile": {"name": "Customer"}, "wa_id": sender}]
    return envelope(_value(phone, contacts=contacts, messages=[message]), waba=waba)


def image(wamid: str, at: int, sender: str = OTHER) -> bytes:
    message = {"from": sender, "id": wamid, "timestamp": str(at), "type": "image",
               "image": {"id": "1234567890123456", "mime_type": "image/jpeg", "sha256": "abc", "caption": "a photo"}}
    return envelope(_value(ACME_PHONE, contacts=[{"profile": {"name": "Other"}, "wa_id": sender}], messages=[message]))


def echo(wamid: str, at: int, to: str = CUSTOMER) -> bytes:
    item = {"from": "15550000001", "to": to, "id": wamid, "timestamp": str(at), "type": "text", "text": {"body": "answer"}}
    return envelope(_value(ACME_PHONE, message_echoes=[item]), field="smb_message_echoes")


def status(wamid: str, state: str, at: int, recipient: str = CUSTOMER) -> bytes:
    return envelope(_value(ACME_PHONE, statuses=[{"id": wamid, "status": state, "timestamp": str(at), "recipient_id": recipient}]))


def reaction(wamid: str, target: str, emoji: str, at: int, sender: str = CUSTOMER) -> bytes:
    return inbound(wamid, at, sender, type="reaction", reaction={"message_id": target, "emoji": emoji}, text=None)


def group_text(wamid: str, at: int, group: str = "120363000000000001@g.us", sender: str = "15550000102") -> bytes:
    return inbound(wamid, at, sender, group_id=group)


__all__ = ["ACME_PHONE", "ACME_WABA", "CUSTOMER", "GLOBEX_PHONE", "GLOBEX_WABA", "OTHER", "echo", "envelope", "group_text", "image", "inbound", "reaction", "status"]
