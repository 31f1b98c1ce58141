"""Doctor checks that ask Meta's Graph API: the app token, the app's webhook subscription and
its fields, and every stored business token's scopes and expiry.

Sources: Graph API "debug_token" (Meta, Graph API "debug_token" reference), Graph reference "Application
Subscriptions" / "Subscriptions Edge" (``GET /{app-id}/subscriptions``: ``object``,
``callback_url``, ``active``, ``fields[{name, version}]``), and the webhook fields of the fact
sheet §3, §4 (coexistence: ``history``, ``smb_app_state_sync``, ``smb_message_echoes``), §10.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from wa_core.doctor.model import Check, fail, ok, skip, warn
from wa_core.settings import Settings

#: webhook fields the service needs: messages and lifecycle (§2, §3.1: Embedded Signup needs
#: account_update), coexistence (§4) and templates (§10.1). A missing one is a ``fail``.
REQUIRED_FIELDS: tuple[str, ...] = (
    "messages",
    "account_update",
    "history",
    "smb_message_echoes",
    "smb_app_state_sync",
    "message_template_status_update",
)
#: fields the processing acts on but the service works without (a missing one is a ``warn``)
RECOMMENDED_FIELDS: tuple[str, ...] = (
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
    "phone_number_quality_update",
    "phone_number_name_update",
    "account_review_update",
    "business_capability_update",
    "account_alerts",
    "security",
    "user_preferences",
)
WABA_OBJECT = "whatsapp_business_account"
_SUBSCRIBE_FIX = "App Dashboard → WhatsApp → Configuration → Webhook fields: subscribe "


def _graph_skip(settings: Settings, name: str) -> Check | None:
    if not settings.meta_app_id or settings.meta_app_secret is None and settings.meta_app_access_token is None:
        return skip(name, "META_APP_ID or META_APP_SECRET is not set: Meta cannot be asked", "set META_APP_ID and META_APP_SECRET")
    return None


def _graph_error(name: str, exc: Exception) -> Check:
    from wa_core.meta.graph.errors import TokenInvalid, TransientGraphError

    if isinstance(exc, TokenInvalid):
        return fail(name, f"Meta refused the app token: {exc}",
                    "META_APP_ID and META_APP_SECRET must be this app's (App Dashboard → App settings → Basic); "
                    "a rotated secret must be updated here")
    if isinstance(exc, TransientGraphError):
        return fail(name, f"Graph API not reachable: {exc}", "check outbound HTTPS to graph.facebook.com (GRAPH_API_BASE_URL)")
    return fail(name, f"Graph API error: {exc}", "see the message; Meta, WhatsApp Cloud API 'Error codes' lists the codes")


def app_token_checks(settings: Settings, graph: Any) -> Iterator[Check]:
    """``debug_token`` on the app token (``APP_ID|APP_SECRET`` or ``META_APP_ACCESS_TOKEN``):
    valid, and issued for ``META_APP_ID``."""
    name = "meta.app_token"
    if (skipped := _graph_skip(settings, name)) is not None:
        yield skipped
        return
    try:
        data = graph.debug_app_token()
    except Exception as exc:
        yield _graph_error(name, exc)
        return
    if not data.get("is_valid"):
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        yield fail(name, f"the app token is not valid: {error.get('message') or 'is_valid false'}",
                   "check META_APP_SECRET (App Dashboard → App settings → Basic)")
    elif str(data.get("app_id")) != str(settings.meta_app_id):
        yield fail(name, f"the app token belongs to app {data.get('app_id')}, not META_APP_ID {settings.meta_app_id}",
                   "META_APP_ID, META_APP_SECRET and META_APP_ACCESS_TOKEN must all be of the same app")
    else:
        yield ok(name, f"app token valid for app {settings.meta_app_id} ({data.get('application') or data.get('type') or 'app'})")


def subscription_checks(settings: Settings, graph: Any, found: dict[str, Any]) -> Iterator[Check]:
    """``GET /{app-id}/subscriptions``: a ``whatsapp_business_account`` subscription exists, is
    active, points at ``META_WEBHOOK_CALLBACK_URL`` and has every :data:`REQUIRED_FIELDS`
    (each missing one named; :data:`RECOMMENDED_FIELDS` missing → warn). The callback URL Meta
    has is put in ``found["callback_url"]`` for the round-trip checks."""
    name = "meta.webhook_subscription"
    if (skipped := _graph_skip(settings, name)) is not None:
        yield skipped
        return
    try:
        subscriptions = graph.app_subscriptions()
    except Exception as exc:
        yield _graph_error(name, exc)
        return
    sub = next((s for s in subscriptions if s.get("object") == WABA_OBJECT), None)
    if sub is None:
        objects = ", ".join(sorted(str(s.get("object")) for s in subscriptions)) or "none"
        yield fail(name, f"the app has no {WABA_OBJECT} webhook subscription (objects subscribed: {objects})",
                   "App Dashboard → WhatsApp → Configuration → Webhook: set the Callback URL and verify token (docs/meta-setup.md)")
        return
    callback = str(sub.get("callback_url") or "")
    found["callback_url"] = callback
    if not sub.get("active", True):
        yield fail(name, f"the {WABA_OBJECT} subscription is not active (callback {callback})",
                   "re-save the Callback URL in the App Dashboard so that Meta verifies it again")
    elif settings.meta_webhook_callback_url and callback.rstrip("/") != settings.meta_webhook_callback_url.rstrip("/"):
        yield fail(name, f"Meta delivers to {callback}, but META_WEBHOOK_CALLBACK_URL is {settings.meta_webhook_callback_url}",
                   "set the same URL in the App Dashboard (WhatsApp → Configuration) and in META_WEBHOOK_CALLBACK_URL")
    else:
        yield ok(name, f"{WABA_OBJECT} subscription active, callback {callback}")
    subscribed = {str(f.get("name")) for f in sub.get("fields") or [] if isinstance(f, dict)}
    missing = [f for f in REQUIRED_FIELDS if f not in subscribed]
    optional = [f for f in RECOMMENDED_FIELDS if f not in subscribed]
    if missing:
        yield fail("meta.webhook_fields", f"not subscribed: {', '.join(missing)}", _SUBSCRIBE_FIX + ", ".join(missing))
    elif optional:
        yield warn("meta.webhook_fields", f"all required fields subscribed; not subscribed (optional): {', '.join(optional)}",
                   _SUBSCRIBE_FIX + ", ".join(optional) + " to keep those views current")
    else:
        yield ok("meta.webhook_fields", f"{len(subscribed)} fields subscribed, every field the service uses")


def business_token_checks(settings: Settings, engine: sa.Engine, graph: Any, cipher_factory: Callable[[], Any]) -> Iterator[Check]:
    """``debug_token`` on each stored business token (read-only; the nightly check records
    states): valid, both scopes (``whatsapp_business_management``,
    ``whatsapp_business_messaging``), expiry. One check per WABA, ``business_token.<waba_id>``;
    expired, invalid or a missing scope fail, expiring within ``TOKEN_EXPIRING_SOON_DAYS`` warns."""
    from wa_core.db.schema import utcnow, whatsapp_connections
    from wa_core.token_health import classify

    name = "business_tokens"
    c = whatsapp_connections.c
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(c.id, c.waba_id, c.status, c.business_token_encrypted)
            .where(c.business_token_encrypted.is_not(None), c.status.not_in(("offboarded", "deleted")))
            .order_by(c.waba_id)
        ).all()
    if not stored:
        yield skip(name, "no business tokens stored yet (no customer finished Embedded Signup)")
        return
    if (skipped := _graph_skip(settings, name)) is not None:
        yield skipped
        return
    try:
        cipher = cipher_factory()
    except Exception as exc:
        yield fail(name, f"stored tokens cannot be decrypted: {exc}", "set TOKEN_ENCRYPTION_KEY to the key the tokens were stored with")
        return
    now, soon = utcnow(), timedelta(days=settings.token_expiring_soon_days)
    fix = "the customer reconnects through the Connect WhatsApp page (Embedded Signup)"
    for row in stored:
        check = f"business_token.{row.waba_id}"
        try:
            token = cipher.decrypt(row.business_token_encrypted, row.id)
        except Exception as exc:
            yield fail(check, f"cannot decrypt: {type(exc).__name__}", "is the old key in TOKEN_ENCRYPTION_PREVIOUS_KEYS?")
            continue
        try:
            health = classify(graph.debug_token(token), now, soon)
        except Exception as exc:
            yield _graph_error(check, exc)
            continue
        expiry = health["expires_at"].isoformat() if health.get("expires_at") else "never"
        scopes = ", ".join(health.get("scopes") or []) or "none"
        state = health["state"]
        if state == "valid":
            yield ok(check, f"valid, scopes {scopes}, expires {expiry}")
        elif state == "expiring_soon":
            yield warn(check, f"{health['reason']} (scopes {scopes})", fix)
        else:
            yield fail(check, f"{state}: {health['reason']} (connection {row.status})",
                       fix + (" granting both WhatsApp permissions" if state == "missing_permission" else ""))
