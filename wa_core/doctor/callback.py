"""Doctor checks that round-trip to the public callback URL, as Meta would.

* ``callback.verify``: ``GET <callback>?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<random>``
  must answer 200 with the challenge as the body (Meta, WhatsApp Cloud API "Create a webhook endpoint": verification requests), and a wrong verify token
  must be refused (else the endpoint is not checking it).
* ``callback.signed_delivery``: POST a harmless body signed with ``META_APP_SECRET``
  (``X-Hub-Signature-256``, Meta, WhatsApp Cloud API "Create a webhook endpoint": event notifications); it must answer 200 and the exact bytes must be
  stored in this deployment's ``whatsapp_webhook_logs`` (found by ``body_sha256``).

The probe (:func:`probe_body`) is stored like any delivery, never dropped: its only change has
field :data:`PROBE_FIELD`, which no handler knows, so processing marks it ``ignored`` (never
failed, never routed to an organization) and retention removes its body like any other
(``RETENTION_DAYS``). :func:`is_probe` recognises one; ``wa-onboarding webhooks search``
finds them by that field.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import sqlalchemy as sa

from wa_core.doctor.model import Check, fail, ok, skip, warn
from wa_core.settings import Settings

#: the ``changes[].field`` of the doctor's test delivery (unknown to Meta and to our handlers)
PROBE_FIELD = "wa_onboarding_doctor"
#: the ``entry[].id`` of the probe: no WABA has id 0
PROBE_ENTRY_ID = "0"
USER_AGENT = "wa-onboarding-doctor/1"


def probe_body(probe_id: str, now: datetime | None = None) -> bytes:
    """The doctor's test delivery: a ``whatsapp_business_account`` envelope with one change of
    field :data:`PROBE_FIELD` whose value carries ``{"wa_onboarding_doctor": true, "probe_id",
    "sent_at"}`` (UTC ISO 8601). Compact JSON bytes."""
    now = now or datetime.now(timezone.utc)
    value = {"wa_onboarding_doctor": True, "probe_id": probe_id, "sent_at": now.isoformat()}
    payload = {"object": "whatsapp_business_account",
               "entry": [{"id": PROBE_ENTRY_ID, "time": int(now.timestamp()), "changes": [{"field": PROBE_FIELD, "value": value}]}]}
    return json.dumps(payload, separators=(",", ":")).encode()


def is_probe(body: bytes | None) -> bool:
    """True when ``body`` is a doctor test delivery (:func:`probe_body`); never raises."""
    try:
        payload = json.loads(body or b"")
        changes = payload["entry"][0]["changes"]
        return any(c.get("field") == PROBE_FIELD and c.get("value", {}).get("wa_onboarding_doctor") is True for c in changes)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False


def _target(settings: Settings, found: dict[str, Any]) -> str | None:
    return settings.meta_webhook_callback_url or found.get("callback_url") or None


_NO_URL = ("neither META_WEBHOOK_CALLBACK_URL nor a callback URL on file at Meta",
           "set META_WEBHOOK_CALLBACK_URL to the public https://…/api/v1/whatsapp/webhook")


def _transport_error(name: str, url: str, exc: httpx.HTTPError) -> Check:
    return fail(name, f"{url} cannot be reached: {type(exc).__name__}: {str(exc)[:200]}",
                "the receiver must be reachable from the internet at that URL (DNS, TLS certificate, proxy, firewall)")


def verify_checks(settings: Settings, http: httpx.Client, found: dict[str, Any]) -> Iterator[Check]:
    """The verify handshake round trip (see the module docstring)."""
    name = "callback.verify"
    url = _target(settings, found)
    token = settings.meta_webhook_verify_token.get_secret_value() if settings.meta_webhook_verify_token else ""
    if not url:
        yield skip(name, *_NO_URL)
        return
    if not token:
        yield skip(name, "META_WEBHOOK_VERIFY_TOKEN is not set", "set it (and the same value in the App Dashboard)")
        return
    challenge = str(secrets.randbelow(10**9) + 10**9)
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}
    try:
        answer = http.get(url, params=params)
        wrong = http.get(url, params={**params, "hub.verify_token": token + "-wrong"})
    except httpx.HTTPError as exc:
        yield _transport_error(name, url, exc)
        return
    if answer.status_code != 200 or answer.text.strip() != challenge:
        why = "the verify token differs" if answer.status_code == 403 else f"HTTP {answer.status_code}"
        yield fail(name, f"{url} did not echo hub.challenge ({why}; body {answer.text[:80]!r})",
                   "META_WEBHOOK_VERIFY_TOKEN must equal the Verify token in WhatsApp → Configuration, "
                   "and the URL must reach this receiver's /api/v1/whatsapp/webhook")
    elif wrong.status_code == 200:
        yield warn(name, f"{url} echoes the challenge for a wrong verify token too", "the endpoint is not this receiver, or a proxy answers for it")
    else:
        yield ok(name, f"{url} echoed hub.challenge for our verify token and refused a wrong one")


def delivery_checks(settings: Settings, http: httpx.Client, engine: sa.Engine | None, found: dict[str, Any]) -> Iterator[Check]:
    """The signed test delivery (see the module docstring); ``engine`` None skips the look-up."""
    from wa_core.db.schema import whatsapp_webhook_logs as logs
    from wa_core.meta.signature import SIGNATURE_HEADER, sign

    name = "callback.signed_delivery"
    url = _target(settings, found)
    secret = settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else ""
    if not url:
        yield skip(name, *_NO_URL)
        return
    if not secret:
        yield skip(name, "META_APP_SECRET is not set: nothing can be signed", "set META_APP_SECRET")
        return
    body = probe_body(secrets.token_hex(8))
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret), "User-Agent": USER_AGENT}
    try:
        answer = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        yield _transport_error(name, url, exc)
        return
    if answer.status_code == 401:
        yield fail(name, f"{url} refused our signature (401)",
                   "the receiver behind that URL has another META_APP_SECRET: use this app's secret everywhere")
        return
    if answer.status_code != 200:
        yield fail(name, f"{url} answered HTTP {answer.status_code} to a signed delivery (Meta retries anything but 200)",
                   "look at the receiver's log line for it (503: database or app secret; 413: size)")
        return
    if engine is None:
        yield warn(name, f"{url} answered 200; the database was not checked", "fix the database check first")
        return
    digest = hashlib.sha256(body).hexdigest()
    with engine.connect() as conn:
        row = conn.execute(sa.select(logs.c.id, logs.c.status).where(logs.c.body_sha256 == digest)).first()
    if row is None:
        yield fail(name, f"{url} answered 200 but the delivery is not in this deployment's database",
                   "the callback URL reaches another deployment (or another DATABASE_URL): point it at this one")
        return
    yield ok(name, f"signed test delivery landed as webhook {row.id} ({row.status}; field {PROBE_FIELD}, processed as ignored)")
