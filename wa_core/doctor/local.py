"""Doctor checks that need nothing outside this deployment: settings, database, Redis, the page.

Every check names the setting to change in its ``fix`` (``wa_core/settings.py`` and
docs/configuration.md describe them). None of them prints a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from wa_core.doctor.model import Check, fail, ok, skip, warn
from wa_core.settings import Settings

_NUMERIC_ID = re.compile(r"^[0-9]{5,32}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_PIN = re.compile(r"^[0-9]{6}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: the receiver's webhook path (wa_webhook/routes/webhook.py)
WEBHOOK_PATH = "/api/v1/whatsapp/webhook"
_DASHBOARD_BASIC = "Meta App Dashboard → App settings → Basic"


def _secret(value) -> str:
    return value.get_secret_value() if value is not None else ""


def settings_checks(settings: Settings) -> Iterator[Check]:
    """Settings present and well-formed: ``META_APP_ID`` (numeric), ``META_APP_SECRET`` (32 hex
    characters as the App Dashboard shows it), ``META_WEBHOOK_VERIFY_TOKEN``,
    ``TOKEN_ENCRYPTION_KEY`` (64 hex), the JWT key, ``ADMIN_API_TOKEN``, ``REGISTER_PIN``,
    ``DATABASE_URL``, ``META_WEBHOOK_CALLBACK_URL`` and the Graph API URL (no control character)."""
    yield _graph_api(settings)
    app_id = settings.meta_app_id or ""
    if not app_id:
        yield fail("settings.meta_app_id", "META_APP_ID is not set", f"set META_APP_ID to the App ID ({_DASHBOARD_BASIC})")
    elif not _NUMERIC_ID.match(app_id):
        yield fail("settings.meta_app_id", "META_APP_ID is not a numeric Meta id", f"copy the App ID from {_DASHBOARD_BASIC}")
    else:
        yield ok("settings.meta_app_id", f"META_APP_ID {app_id}")

    secret = _secret(settings.meta_app_secret)
    if not secret:
        yield fail("settings.meta_app_secret", "META_APP_SECRET is not set: every webhook delivery is refused (503)",
                   f"set META_APP_SECRET to the App secret ({_DASHBOARD_BASIC} → Show)")
    elif not _HEX32.match(secret):
        yield warn("settings.meta_app_secret", f"META_APP_SECRET is {len(secret)} characters, not the 32 hex characters of a Meta app secret",
                   f"copy the App secret again from {_DASHBOARD_BASIC} (no quotes or spaces)")
    else:
        yield ok("settings.meta_app_secret", "META_APP_SECRET is set (32 hex characters)")

    verify = _secret(settings.meta_webhook_verify_token)
    if not verify:
        yield fail("settings.meta_webhook_verify_token", "META_WEBHOOK_VERIFY_TOKEN is not set: the verify handshake answers 503",
                   "set META_WEBHOOK_VERIFY_TOKEN to a random string and enter the same in WhatsApp → Configuration → Webhook")
    elif len(verify) < 16:
        yield warn("settings.meta_webhook_verify_token", f"META_WEBHOOK_VERIFY_TOKEN is only {len(verify)} characters",
                   "use a random value of at least 16 characters (e.g. `openssl rand -hex 16`) here and in the App Dashboard")
    else:
        yield ok("settings.meta_webhook_verify_token", "META_WEBHOOK_VERIFY_TOKEN is set")

    yield _token_key(settings)
    yield _jwt(settings)

    if not _secret(settings.admin_api_token):
        yield warn("settings.admin_api_token", "ADMIN_API_TOKEN is not set: the admin API (and its doctor endpoint) answer 503",
                   "set ADMIN_API_TOKEN to a long random value")
    else:
        yield ok("settings.admin_api_token", "ADMIN_API_TOKEN is set")

    pin = _secret(settings.register_pin)
    if not pin:
        yield warn("settings.register_pin", "REGISTER_PIN is not set: non-coexistence numbers cannot be registered (POST /register)",
                   "set REGISTER_PIN to a 6-digit two-step verification PIN")
    elif not _PIN.match(pin):
        yield fail("settings.register_pin", "REGISTER_PIN is not 6 digits", "set REGISTER_PIN to exactly 6 digits")
    else:
        yield ok("settings.register_pin", "REGISTER_PIN is 6 digits")

    if not settings.is_postgres:
        yield warn("settings.database_url", f"no Postgres DATABASE_URL: the embedded SQLite file {settings.sqlite_path} (demo only)",
                   "set DATABASE_URL=postgresql://user@host:5432/db for production")
    else:
        yield ok("settings.database_url", "DATABASE_URL is Postgres")
    yield callback_url_setting(settings)


def _graph_api(settings: Settings) -> Check:
    name = "settings.graph_api"
    for env, value in (("GRAPH_API_BASE_URL", settings.graph_api_base_url), ("GRAPH_API_VERSION", settings.graph_api_version)):
        if _CONTROL.search(value):
            return fail(name, f"{env} contains a control character (e.g. a carriage return from a .env file saved with CRLF)",
                        f"remove it from {env} (save the .env file with LF line ends)")
    if urlsplit(settings.graph_api_base_url).scheme not in ("http", "https"):
        return fail(name, f"GRAPH_API_BASE_URL is not an http(s) URL: {settings.graph_api_base_url!r}", "set it to https://graph.facebook.com")
    return ok(name, f"Graph API {settings.graph_api_url}")


def _token_key(settings: Settings) -> Check:
    from wa_core.meta.crypto import TokenCipher, TokenCryptoError

    try:
        cipher = TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)
    except TokenCryptoError as exc:
        return fail("settings.token_encryption_key", str(exc), "generate one with `openssl rand -hex 32` and set TOKEN_ENCRYPTION_KEY")
    return ok("settings.token_encryption_key", f"TOKEN_ENCRYPTION_KEY is valid (key id {cipher.current_key_id})")


def _jwt(settings: Settings) -> Check:
    algorithms = {a.strip().upper() for a in settings.jwt_algorithms.split(",") if a.strip()}
    secret = _secret(settings.jwt_secret)
    if "HS256" in algorithms and not secret and not settings.jwt_public_key:
        return fail("settings.jwt_secret", "neither JWT_SECRET nor JWT_PUBLIC_KEY is set: the web app's API refuses every call",
                    "set JWT_SECRET (HS256, the SaaS's signing secret) or JWT_PUBLIC_KEY with JWT_ALGORITHMS=RS256")
    if secret and len(secret.encode()) < 32:
        return warn("settings.jwt_secret", f"JWT_SECRET is {len(secret.encode())} bytes; HS256 wants at least 32",
                    "use a random secret of 32 bytes or more (`openssl rand -hex 32`) on both sides")
    if not secret and not settings.jwt_public_key:
        return fail("settings.jwt_secret", f"JWT_ALGORITHMS={settings.jwt_algorithms} but no JWT_PUBLIC_KEY",
                    "set JWT_PUBLIC_KEY to the SaaS's PEM public key")
    return ok("settings.jwt_secret", "a JWT key is set" + ("" if settings.jwt_audience else " (JWT_AUDIENCE unset: any audience accepted)"))


def callback_url_setting(settings: Settings) -> Check:
    """``META_WEBHOOK_CALLBACK_URL``: https (Meta needs a valid certificate: Meta, WhatsApp Cloud API "Webhooks")
    and ending in the receiver's path :data:`WEBHOOK_PATH`; unset is a warning."""
    url = settings.meta_webhook_callback_url
    name = "settings.meta_webhook_callback_url"
    if not url:
        return warn(name, "META_WEBHOOK_CALLBACK_URL is not set: the doctor uses the callback URL Meta has on file",
                    f"set META_WEBHOOK_CALLBACK_URL to the public https://…{WEBHOOK_PATH} entered in the App Dashboard")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return fail(name, "META_WEBHOOK_CALLBACK_URL is not an http(s) URL", f"set it to https://your-host{WEBHOOK_PATH}")
    if not parts.path.rstrip("/").endswith(WEBHOOK_PATH):
        return warn(name, f"the callback URL's path is {parts.path or '/'}, not {WEBHOOK_PATH}",
                    f"unless a proxy rewrites it, use https://{parts.netloc}{WEBHOOK_PATH}")
    if parts.scheme != "https":
        return warn(name, "the callback URL is plain http: Meta only delivers to https with a valid certificate (Meta, WhatsApp Cloud API 'Webhooks')",
                    "serve the receiver behind TLS (a reverse proxy) and use the https:// URL")
    return ok(name, f"callback URL {url}")


def database_checks(settings: Settings) -> Iterator[Check]:
    """The app database reachable and migrated to Alembic's head (:func:`require_migrated`)."""
    from wa_core.db.migrate import NotMigrated, require_migrated

    try:
        require_migrated(settings)
    except NotMigrated as exc:
        yield fail("database", str(exc), "check DATABASE_URL, then run `wa-onboarding migrate`")
        return
    yield ok("database", "reachable and migrated to head")


def redis_checks(settings: Settings) -> Iterator[Check]:
    """Redis answers ``PING`` when ``REDIS_URL`` is set; ``skip`` otherwise (it is optional:
    rate limits and the onboarding cache then live in the process)."""
    if not settings.redis_url:
        yield skip("redis", "REDIS_URL is not set: rate limits and the onboarding cache are per process (fine for one receiver)",
                   "set REDIS_URL when you run more than one receiver process")
        return
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        yield fail("redis", f"REDIS_URL does not answer: {type(exc).__name__}: {str(exc)[:200]}", "start Redis or fix REDIS_URL")
        return
    finally:
        client.close()
    yield ok("redis", "REDIS_URL answers PING")


def page_checks(settings: Settings) -> Iterator[Check]:
    """The onboarding page's Embedded Signup launch: ``META_APP_ID`` and ``META_CONFIG_ID``
    (the Facebook Login for Business configuration, Meta, Embedded Signup "Implementation") set and numeric."""
    missing = [name for name, value in (("META_APP_ID", settings.meta_app_id), ("META_CONFIG_ID", settings.meta_config_id)) if not value]
    if missing:
        yield fail("onboarding_page", f"{' and '.join(missing)} not set: the Connect WhatsApp page cannot start Embedded Signup",
                   "create a Facebook Login for Business configuration (WhatsApp Embedded Signup) and set META_CONFIG_ID to its id")
        return
    bad = [name for name, value in (("META_APP_ID", settings.meta_app_id), ("META_CONFIG_ID", settings.meta_config_id)) if not _NUMERIC_ID.match(value)]
    if bad:
        yield fail("onboarding_page", f"{' and '.join(bad)} is not a numeric Meta id", "copy the ids from the App Dashboard (Facebook Login for Business → Configurations)")
        return
    yield ok("onboarding_page", f"the page launches Embedded Signup with app {settings.meta_app_id}, configuration {settings.meta_config_id}")
