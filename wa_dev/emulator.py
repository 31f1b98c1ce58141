"""An in-memory emulator of the Graph API endpoints the Embedded Signup back end uses.

For tests and the demo: a Starlette app we own that answers like Meta on a versioned prefix
``/{version}/...`` (any ``vN.M``). It is **not** Meta; behaviour follows Meta's Embedded Signup,
coexistence, token and error-code pages and is deliberately small:

=============================================  ==================================================
``GET /oauth/access_token``                    checks ``client_id``/``client_secret``; the ``code``
                                               comes from :meth:`GraphEmulator.issue_code`, is
                                               single-use and lives ``code_ttl`` (30 s, §5.1);
                                               returns a business token bound to that WABA
``POST|GET|DELETE /{waba}/subscribed_apps``    Bearer must be a valid token for that WABA
``GET /{waba}/phone_numbers``                  ``fields``, ``limit`` (default ``page_size``), ``after``
``GET /{phone}``                               the number's fields (``is_on_biz_app``, ...)
``POST /{phone}/register``                     coexistence numbers refused (code 100); 11th call in
                                               72 h → 133016; PIN set once, mismatch → 133005
``POST /{phone}/smb_app_data``                 coexistence only; each type once (2593107); only
                                               within ``sync_window`` of onboarding (2593108)
``GET /debug_token``                           app token ``APP_ID|APP_SECRET`` (or the configured
                                               app token); ``is_valid``/``expires_at``/scopes;
                                               the app token itself as ``input_token`` → ``type: APP``
``GET /{app-id}/subscriptions``                the app's webhook subscriptions (app token only),
                                               set with :meth:`GraphEmulator.set_app_subscription`
``GET /{media-id}``, ``GET /media-cdn/…``       the Media API and its expiring download URLs
                                               (:mod:`wa_dev.emulator_media`, :attr:`media`)
=============================================  ==================================================

Errors use Meta's shape ``{"error": {"message", "type", "code", "error_subcode"?,
"error_data"?, "fbtrace_id"}}``. Token problems: unknown, invalidated or expired token → 190
(HTTP 401 like Meta's auth errors); a valid token used on a WABA or number it was not issued
for → 100 / subcode 33 ("does not exist, cannot be loaded due to missing permissions"), which is
what Graph answers for objects a token cannot see. Time comes from :attr:`GraphEmulator.now`
(replace it in tests). Every request is recorded in :attr:`GraphEmulator.calls` with secrets
(``client_secret``, ``access_token``, ``input_token``, ``code``, ``pin``) redacted.

:meth:`GraphEmulator.fail_next` injects Meta-style errors, :meth:`GraphEmulator.delay_next`
slow answers, and :meth:`GraphEmulator.send_partner_added` pushes a signed ``account_update``
``PARTNER_ADDED`` webhook like Meta (optionally fired automatically after each successful code
exchange, like Meta does when a customer finishes Embedded Signup). :func:`serve_in_thread`
runs the app with uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wa_core.meta.signature import SIGNATURE_HEADER, sign
from wa_dev.emulator_media import DEMO_MEDIA_BYTES, MediaCdn
from wa_dev.simulate import USER_AGENT, wire_bytes

SECRET_KEYS = frozenset({"client_secret", "access_token", "input_token", "code", "pin", "appsecret_proof"})
REDACTED = "[redacted]"
SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
SYNC_TYPES = ("smb_app_state_sync", "history")
_VERSIONED = re.compile(r"^/(v\d+\.\d+)(/.*)?$")


@dataclass
class EmulatedNumber:
    """A phone number of an emulated WABA."""

    id: str
    display_phone_number: str
    verified_name: str
    coexistence: bool
    waba_id: str
    code_verification_status: str = "VERIFIED"
    quality_rating: str = "GREEN"
    pin: str | None = None
    registered: bool = False
    register_calls: list[float] = field(default_factory=list)
    syncs: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """All fields the emulator can answer for this number."""
        return {
            "id": self.id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "code_verification_status": self.code_verification_status,
            "quality_rating": self.quality_rating,
            "platform_type": "CLOUD_API",
            "is_on_biz_app": self.coexistence,
            "throughput": {"level": "STANDARD"},
        }


@dataclass
class EmulatedWaba:
    """A WhatsApp Business Account shared with the app."""

    id: str
    owner_business_id: str
    number_ids: list[str] = field(default_factory=list)
    subscribed: dict[str, dict[str, Any]] = field(default_factory=dict)  # app id -> subscription
    created_at: float = 0.0
    onboarded_at: float | None = None  # last successful code exchange


@dataclass
class EmulatedToken:
    """A business (system-user) token issued by the emulator."""

    token: str
    app_id: str
    waba_ids: list[str]
    business_id: str | None
    user_id: str
    issued_at: int
    expires_at: int = 0  # 0 = never
    scopes: tuple[str, ...] = SCOPES
    valid: bool = True
    invalid_message: str = ""
    invalid_subcode: int | None = None


@dataclass
class EmulatorCall:
    """One request the emulator answered (secrets redacted)."""

    method: str
    path: str  # without the version prefix, e.g. "/100000000000001/subscribed_apps"
    version: str | None
    params: dict[str, Any]
    body: Any
    auth: str | None  # "bearer", "oauth", "query" (access_token in the query) or None
    status: int = 0
    error_code: int | None = None


@dataclass
class SentWebhook:
    """A webhook the emulator POSTed."""

    url: str
    body: bytes
    status: int  # 0 = no answer


@dataclass
class _Injection:
    pattern: re.Pattern[str]
    method: str | None
    remaining: int
    code: int | None = None
    http_status: int = 400
    message: str = ""
    subcode: int | None = None
    error_type: str | None = None
    delay: float = 0.0


class _Fail(Exception):
    def __init__(self, http_status: int, code: int, message: str, *, subcode: int | None = None,
                 error_type: str = "OAuthException", details: str | None = None) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message = http_status, code, message
        self.subcode, self.error_type, self.details = subcode, error_type, details


def _redact(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: (REDACTED if k in SECRET_KEYS else v) for k, v in values.items()}
    return values


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"idx:{index}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(0, int(raw.removeprefix("idx:")))
    except (ValueError, UnicodeDecodeError):
        raise _Fail(400, 100, "(#100) Invalid cursor", error_type="GraphMethodException") from None


class GraphEmulator:
    """In-memory Graph API state plus the ASGI app (:meth:`create_app`) that serves it.

    Configure with :meth:`add_waba`; hand out ES codes with :meth:`issue_code`; tokens come from
    the code exchange or :meth:`add_token`. ``now`` (a callable returning Unix seconds) is the
    clock of every expiry check. ``token_expires_in=None`` issues never-expiring tokens
    (``expires_at`` 0, no ``expires_in``); a number of seconds issues expiring ones.
    """

    def __init__(
        self,
        app_id: str = "1234567890123456",
        app_secret: str = "emulator-app-secret",
        *,
        app_access_token: str | None = None,
        app_name: str = "WA Onboarding (emulator)",
        partner_business_id: str = "300000000000900",
        solution_id: str | None = None,
        code_ttl: float = 30.0,
        sync_window: float = 24 * 3600.0,
        register_limit: int = 10,
        register_window: float = 72 * 3600.0,
        page_size: int = 25,
        token_expires_in: int | None = None,
        auto_partner_added: tuple[str, str] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.app_access_token = app_access_token
        self.app_name = app_name
        self.partner_business_id = partner_business_id
        self.solution_id = solution_id
        self.code_ttl = code_ttl
        self.sync_window = sync_window
        self.register_limit = register_limit
        self.register_window = register_window
        self.page_size = page_size
        self.token_expires_in = token_expires_in
        self.auto_partner_added = auto_partner_added
        self.now = now
        self.wabas: dict[str, EmulatedWaba] = {}
        self.numbers: dict[str, EmulatedNumber] = {}
        self.tokens: dict[str, EmulatedToken] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.calls: list[EmulatorCall] = []
        self.webhooks_sent: list[SentWebhook] = []
        self._injections: list[_Injection] = []
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self.media = MediaCdn(lambda: self.now())  # media nodes and their CDN (emulator_media.py)
        #: the app's webhook subscriptions by object (``GET /{app-id}/subscriptions``)
        self.app_subscriptions: dict[str, dict[str, Any]] = {}

    # --- configuration -------------------------------------------------------------------
    def add_waba(self, waba_id: str, owner_business_id: str, numbers: Iterable[dict[str, Any]] = ()) -> EmulatedWaba:
        """Add (or replace) a WABA owned by ``owner_business_id`` with its numbers.

        Each number: ``{"id", "display_phone_number", "verified_name", "coexistence": bool}``
        (optional ``code_verification_status``, ``quality_rating``, ``pin``). Coexistence
        numbers are already registered (on the WhatsApp Business app).
        """
        with self._lock:
            waba = EmulatedWaba(id=str(waba_id), owner_business_id=str(owner_business_id), created_at=self.now())
            for spec in numbers:
                number = EmulatedNumber(
                    id=str(spec["id"]),
                    display_phone_number=str(spec.get("display_phone_number", "")),
                    verified_name=str(spec.get("verified_name", "")),
                    coexistence=bool(spec.get("coexistence", False)),
                    waba_id=waba.id,
                    code_verification_status=spec.get("code_verification_status", "VERIFIED"),
                    quality_rating=spec.get("quality_rating", "GREEN"),
                    pin=spec.get("pin"),
                )
                number.registered = number.coexistence
                self.numbers[number.id] = number
                waba.number_ids.append(number.id)
            self.wabas[waba.id] = waba
            return waba

    def set_app_subscription(
        self, callback_url: str, fields: Iterable[str], *, object_type: str = "whatsapp_business_account",
        active: bool = True, version: str = "v25.0",
    ) -> None:
        """Set the app's webhook subscription for ``object_type`` as the App Dashboard would
        (``POST /{app-id}/subscriptions``): ``callback_url``, the subscribed ``fields``, and
        whether it is ``active``. Graph "Subscriptions Edge"."""
        with self._lock:
            self.app_subscriptions[object_type] = {
                "object": object_type, "callback_url": callback_url, "active": bool(active),
                "fields": [{"name": name, "version": version} for name in fields],
            }

    def issue_code(self, waba_id: str) -> str:
        """A fresh Embedded Signup ``code`` for ``waba_id`` (single-use, ``code_ttl`` seconds)."""
        with self._lock:
            if str(waba_id) not in self.wabas:
                raise KeyError(f"unknown WABA {waba_id}; add_waba() first")
            code = "AQ" + secrets.token_urlsafe(48)
            self.codes[code] = {"waba_id": str(waba_id), "issued_at": self.now(), "used": False}
            return code

    def add_token(
        self,
        waba_ids: str | Iterable[str],
        *,
        token: str | None = None,
        expires_at: int = 0,
        scopes: Iterable[str] = SCOPES,
        business_id: str | None = None,
    ) -> str:
        """Register a business token for ``waba_ids`` directly (``expires_at`` 0 = never)."""
        ids = [str(waba_ids)] if isinstance(waba_ids, str) else [str(w) for w in waba_ids]
        with self._lock:
            value = token or "EAA" + secrets.token_urlsafe(60)
            owner = business_id or (self.wabas[ids[0]].owner_business_id if ids and ids[0] in self.wabas else None)
            self.tokens[value] = EmulatedToken(
                token=value, app_id=self.app_id, waba_ids=ids, business_id=owner,
                user_id=str(secrets.randbelow(9 * 10**14) + 10**14), issued_at=int(self.now()),
                expires_at=int(expires_at), scopes=tuple(scopes),
            )
            return value

    def invalidate_token(
        self,
        token: str,
        message: str = "Error validating access token: The session has been invalidated because the user "
        "changed their password or Facebook has changed the session for security reasons.",
        subcode: int | None = 460,
    ) -> None:
        """Mark ``token`` invalid (e.g. the customer removed the app): calls get 190."""
        with self._lock:
            tok = self.tokens[token]
            tok.valid, tok.invalid_message, tok.invalid_subcode = False, message, subcode

    def tokens_for(self, waba_id: str) -> list[str]:
        """Tokens bound to ``waba_id``, oldest first."""
        with self._lock:
            return [t.token for t in self.tokens.values() if str(waba_id) in t.waba_ids]

    def fail_next(
        self,
        path_pattern: str,
        code: int,
        times: int = 1,
        http_status: int = 400,
        message: str = "Injected failure",
        *,
        method: str | None = None,
        subcode: int | None = None,
        error_type: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path matches ``path_pattern`` with an error.

        ``path_pattern`` is a regular expression searched (:func:`re.search`) in the path
        without the version prefix, e.g. ``"/subscribed_apps$"``, ``"register"``,
        ``"^/oauth/access_token$"``; ``method`` restricts it to one HTTP method. Examples:
        ``fail_next("phone_numbers", 80007)`` (WABA rate limit), ``fail_next("register", 4)``,
        ``fail_next("subscribed_apps", 190)``, ``fail_next("phone_numbers", 2, http_status=500)``.
        Injections are checked before anything else and do not consume codes or quotas.
        """
        self._inject(_Injection(
            re.compile(path_pattern), method.upper() if method else None, times, code=code,
            http_status=http_status, message=message, subcode=subcode, error_type=error_type,
        ))

    def delay_next(self, path_pattern: str, seconds: float, times: int = 1, *, method: str | None = None) -> None:
        """Delay the next ``times`` matching answers by ``seconds`` (to provoke client timeouts)."""
        self._inject(_Injection(re.compile(path_pattern), method.upper() if method else None, times, delay=seconds))

    def _inject(self, injection: _Injection) -> None:
        if injection.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._injections.append(injection)

    def calls_to(self, path_pattern: str, method: str | None = None) -> list[EmulatorCall]:
        """Recorded calls whose path matches ``path_pattern`` (``re.search``)."""
        regex = re.compile(path_pattern)
        with self._lock:
            return [c for c in self.calls if regex.search(c.path) and (method is None or c.method == method.upper())]

    # --- webhooks like Meta ----------------------------------------------------------------
    def partner_added_payload(self, waba_id: str, entry_time: int | None = None) -> dict[str, Any]:
        """The ``account_update`` ``PARTNER_ADDED`` body Meta sends when ``waba_id`` is shared
        (Meta, WhatsApp Cloud API webhook reference "account_update"): ``entry[].id`` is the partner's business id, the WABA is in
        ``value.waba_info.waba_id``."""
        with self._lock:
            waba = self.wabas.get(str(waba_id))
            if waba is None:
                raise KeyError(f"unknown WABA {waba_id}")
            info: dict[str, Any] = {"waba_id": waba.id, "owner_business_id": waba.owner_business_id}
            if self.solution_id:
                info["solution_id"] = self.solution_id
            info["solution_partner_business_ids"] = [self.partner_business_id]
            return {
                "object": "whatsapp_business_account",
                "entry": [{
                    "id": self.partner_business_id,
                    "time": int(entry_time if entry_time is not None else self.now()),
                    "changes": [{"value": {"event": "PARTNER_ADDED", "waba_info": info}, "field": "account_update"}],
                }],
            }

    def send_partner_added(
        self, waba_id: str, callback_url: str, app_secret: str, entry_time: int | None = None, *, timeout: float = 5.0
    ) -> int:
        """POST a signed ``PARTNER_ADDED`` webhook to ``callback_url`` like Meta.

        Wire bytes from :func:`wa_dev.simulate.wire_bytes`, ``Content-Type:
        application/json``, ``X-Hub-Signature-256`` from :func:`wa_core.meta.signature.sign`.
        Returns the HTTP status (0 when the receiver could not be reached).
        """
        body = wire_bytes(self.partner_added_payload(waba_id, entry_time))
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, app_secret), "User-Agent": USER_AGENT}
        try:
            status = httpx.post(callback_url, content=body, headers=headers, timeout=timeout).status_code
        except httpx.HTTPError:
            status = 0
        with self._lock:
            self.webhooks_sent.append(SentWebhook(callback_url, body, status))
        return status

    def _auto_send(self, waba_id: str, callback_url: str, app_secret: str) -> None:
        delay = 0.25
        for attempt in range(4):  # like Meta: immediately, then with growing delays (bounded here)
            if self.send_partner_added(waba_id, callback_url, app_secret) == 200:
                return
            if attempt < 3:
                time.sleep(delay)
                delay *= 2

    def wait_for_webhooks(self, count: int, timeout: float = 5.0) -> list[SentWebhook]:
        """Wait until at least ``count`` webhooks were sent (for ``auto_partner_added``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.webhooks_sent) >= count:
                    return list(self.webhooks_sent)
            time.sleep(0.01)
        raise TimeoutError(f"{len(self.webhooks_sent)} of {count} webhooks sent")

    # --- HTTP app ------------------------------------------------------------------------
    def create_app(self) -> Starlette:
        """The ASGI app serving this emulator's state (every call shares it)."""
        methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
        return Starlette(routes=[Route("/{rest:path}", self._handle, methods=methods)])

    async def _handle(self, request: Request) -> Response:
        params = dict(request.query_params)
        body = await self._body(request)
        merged = {**params, **(body if isinstance(body, dict) else {})}
        auth = self._auth_scheme(request, params)
        match = _VERSIONED.match(request.url.path)
        version = match.group(1) if match else None
        path = (match.group(2) or "/") if match else request.url.path
        call = EmulatorCall(request.method, path, version, _redact(params), _redact(body), auth)

        injection = self._take_injection(request.method, path)
        if injection is not None and injection.delay:
            await asyncio.sleep(injection.delay)
        try:
            if injection is not None and injection.code is not None:
                raise _Fail(injection.http_status, injection.code, injection.message, subcode=injection.subcode,
                            error_type=injection.error_type or "OAuthException")
            if version is None and path.startswith("/media-cdn/") and request.method == "GET":
                response = self.media.download(self, request, path)
            elif version is None:
                raise _Fail(400, 2500, "Unknown path components: the emulator needs a /vN.M/ version prefix")
            else:
                with self._lock:
                    response = self._route(request, path, merged)
            call.status = response.status_code
        except _Fail as fail:
            response = self._error(fail)
            call.status, call.error_code = fail.http_status, fail.code
        with self._lock:
            self.calls.append(call)
        return response

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return None
        ctype = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in ctype:
            return dict((await request.form()).items())
        try:
            return json.loads(raw)
        except ValueError:
            return {"_raw": raw.decode("utf-8", errors="replace")}

    @staticmethod
    def _auth_scheme(request: Request, params: dict[str, Any]) -> str | None:
        header = request.headers.get("authorization", "")
        scheme = header.split(" ", 1)[0].lower() if header else ""
        if scheme in ("bearer", "oauth"):
            return scheme
        return "query" if "access_token" in params else None

    @staticmethod
    def _token(request: Request, params: dict[str, Any]) -> str | None:
        header = request.headers.get("authorization", "")
        parts = header.split(" ", 1)
        if len(parts) == 2 and parts[0].lower() in ("bearer", "oauth") and parts[1].strip():
            return parts[1].strip()
        return params.get("access_token") or None

    def _take_injection(self, method: str, path: str) -> _Injection | None:
        with self._lock:
            for injection in self._injections:
                if injection.remaining > 0 and (injection.method in (None, method)) and injection.pattern.search(path):
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                    return injection
        return None

    def _error(self, fail: _Fail) -> JSONResponse:
        error: dict[str, Any] = {"message": fail.message, "type": fail.error_type, "code": fail.code}
        if fail.subcode is not None:
            error["error_subcode"] = fail.subcode
        if fail.details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": fail.details}
        if fail.code in (1, 2) or fail.http_status >= 500:
            error["is_transient"] = True
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return JSONResponse({"error": error}, status_code=fail.http_status)

    def _route(self, request: Request, path: str, params: dict[str, Any]) -> Response:
        method = request.method
        parts = [p for p in path.split("/") if p]
        if parts == ["oauth", "access_token"] and method == "GET":
            return self._oauth(params)
        if parts == ["debug_token"] and method == "GET":
            return self._debug_token(request, params)
        if len(parts) == 2 and parts[0].isdigit():
            node, edge = parts
            if edge == "subscriptions" and node == self.app_id and method == "GET":
                return self._app_subscriptions(request, params)
            if edge == "subscribed_apps" and method in ("GET", "POST", "DELETE"):
                return self._subscribed_apps(request, params, node)
            if edge == "phone_numbers" and method == "GET":
                return self._phone_numbers(request, params, node)
            if edge == "register" and method == "POST":
                return self._register(request, params, node)
            if edge == "smb_app_data" and method == "POST":
                return self._smb_app_data(request, params, node)
        if len(parts) == 1 and method == "GET" and self.media.serves_any(parts[0], params.get("phone_number_id")):
            self.media.add_media(parts[0], str(params["phone_number_id"]), content=DEMO_MEDIA_BYTES, mime_type="image/jpeg")
        if len(parts) == 1 and parts[0] in self.media.media and method == "GET":
            return self.media.info(self, request, params, parts[0])
        if len(parts) == 1 and parts[0].isdigit() and method == "GET":
            return self._number_node(request, params, parts[0])
        self._unsupported(parts[0] if parts else "", method)

    @staticmethod
    def _unsupported(node: str, method: str = "GET") -> None:
        """Raise Graph's answer for an object that does not exist or cannot be seen (100 / 33)."""
        raise _Fail(400, 100, f"Unsupported {method.lower()} request. Object with ID '{node}' "
                    "does not exist, cannot be loaded due to missing permissions, or does not support this "
                    "operation.", subcode=33, error_type="GraphMethodException")

    # --- endpoint handlers (called with the lock held) -------------------------------------
    def _oauth(self, params: dict[str, Any]) -> Response:
        if params.get("client_id") != self.app_id:
            raise _Fail(400, 101, "Error validating application. Invalid application ID.")
        if params.get("client_secret") != self.app_secret:
            raise _Fail(400, 1, "Error validating client secret.")
        code = params.get("code")
        if not code:
            raise _Fail(400, 100, "(#100) The parameter code is required")
        entry = self.codes.get(code)
        if entry is None:
            raise _Fail(400, 100, "Invalid verification code format.", subcode=36007)
        if entry["used"]:
            raise _Fail(400, 100, "This authorization code has been used.", subcode=36007)
        if self.now() - entry["issued_at"] > self.code_ttl:
            raise _Fail(400, 100, "This authorization code has expired.", subcode=36007)
        entry["used"] = True
        waba = self.wabas[entry["waba_id"]]
        now = self.now()
        waba.onboarded_at = now
        expires_at = int(now + self.token_expires_in) if self.token_expires_in else 0
        token = self.add_token(waba.id, expires_at=expires_at)
        answer: dict[str, Any] = {"access_token": token, "token_type": "bearer"}
        if self.token_expires_in:
            answer["expires_in"] = int(self.token_expires_in)
        if self.auto_partner_added:
            url, secret = self.auto_partner_added
            thread = threading.Thread(target=self._auto_send, args=(waba.id, url, secret), daemon=True,
                                      name="graph-emulator-partner-added")
            self._threads.append(thread)
            thread.start()
        return JSONResponse(answer)

    def _is_app_token(self, value: str | None) -> bool:
        if not value:
            return False
        valid = {f"{self.app_id}|{self.app_secret}"}
        if self.app_access_token:
            valid.add(self.app_access_token)
        return any(secrets.compare_digest(value.encode(), v.encode()) for v in valid)

    def _token_problem(self, tok: EmulatedToken) -> tuple[str, int | None] | None:
        if not tok.valid:
            return tok.invalid_message, tok.invalid_subcode
        if tok.expires_at and self.now() >= tok.expires_at:
            when = datetime.fromtimestamp(tok.expires_at, tz=timezone.utc).strftime("%A, %d-%b-%y %H:%M:%S UTC")
            return f"Error validating access token: Session has expired on {when}.", 463
        return None

    def _debug_token(self, request: Request, params: dict[str, Any]) -> Response:
        if not self._is_app_token(self._token(request, params)):
            raise _Fail(400, 190, "Invalid OAuth access token - Cannot parse access token")
        input_token = params.get("input_token")
        if not input_token:
            raise _Fail(400, 100, "(#100) The parameter input_token is required")
        if self._is_app_token(input_token):  # Meta answers type APP for the app token itself
            return JSONResponse({"data": {
                "app_id": self.app_id, "type": "APP", "application": self.app_name, "is_valid": True, "scopes": [],
            }})
        tok = self.tokens.get(input_token)
        if tok is None:
            return JSONResponse({"data": {
                "error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
                "is_valid": False, "scopes": [],
            }})
        data: dict[str, Any] = {
            "app_id": tok.app_id,
            "type": "SYSTEM_USER",
            "application": self.app_name,
            "data_access_expires_at": 0,
            "expires_at": tok.expires_at,
            "is_valid": True,
            "issued_at": tok.issued_at,
            "scopes": list(tok.scopes),
            "granular_scopes": [{"scope": s, "target_ids": list(reversed(tok.waba_ids))} for s in tok.scopes],
            "user_id": tok.user_id,
        }
        problem = self._token_problem(tok)
        if problem:
            message, subcode = problem
            data["is_valid"] = False
            data["error"] = {"code": 190, "message": message, **({"subcode": subcode} if subcode else {})}
        return JSONResponse({"data": data})

    def _app_subscriptions(self, request: Request, params: dict[str, Any]) -> Response:
        if not self._is_app_token(self._token(request, params)):
            raise _Fail(400, 190, "Invalid OAuth access token - Cannot parse access token")
        return JSONResponse({"data": [dict(sub, fields=list(sub["fields"])) for sub in self.app_subscriptions.values()]})

    def _require_token(self, request: Request, params: dict[str, Any], waba_id: str, node: str) -> EmulatedToken:
        raw = self._token(request, params)
        if not raw:
            raise _Fail(401, 190, "An access token is required to request this resource.")
        tok = self.tokens.get(raw)
        if tok is None:
            raise _Fail(401, 190, "Invalid OAuth access token - Cannot parse access token")
        problem = self._token_problem(tok)
        if problem:
            raise _Fail(401, 190, problem[0], subcode=problem[1])
        if waba_id not in tok.waba_ids:
            raise _Fail(400, 100, f"Unsupported {request.method.lower()} request. Object with ID '{node}' does not "
                        "exist, cannot be loaded due to missing permissions, or does not support this operation.",
                        subcode=33, error_type="GraphMethodException")
        return tok

    def _waba(self, request: Request, params: dict[str, Any], waba_id: str) -> tuple[EmulatedWaba, EmulatedToken]:
        tok = self._require_token(request, params, waba_id, waba_id)
        waba = self.wabas.get(waba_id)
        if waba is None:  # a token can only name WABAs that exist, but stay defensive
            raise _Fail(400, 100, f"Object with ID '{waba_id}' does not exist", subcode=33,
                        error_type="GraphMethodException")
        return waba, tok

    def _number(self, request: Request, params: dict[str, Any], phone_id: str) -> EmulatedNumber:
        number = self.numbers.get(phone_id)
        self._require_token(request, params, number.waba_id if number else "", phone_id)
        if number is None:  # only reachable with a token bound to the WABA id ""
            raise _Fail(400, 100, f"Object with ID '{phone_id}' does not exist", subcode=33,
                        error_type="GraphMethodException")
        return number

    def _subscribed_apps(self, request: Request, params: dict[str, Any], waba_id: str) -> Response:
        waba, tok = self._waba(request, params, waba_id)
        if request.method == "POST":
            subscription: dict[str, Any] = {}
            if params.get("override_callback_uri"):
                subscription["override_callback_uri"] = params["override_callback_uri"]
            waba.subscribed[tok.app_id] = subscription  # a POST without body removes the override (§1.6)
            return JSONResponse({"success": True})
        if request.method == "DELETE":
            waba.subscribed.pop(tok.app_id, None)
            return JSONResponse({"success": True})
        data = []
        for app_id, subscription in waba.subscribed.items():
            item: dict[str, Any] = {"whatsapp_business_api_data": {
                "id": app_id, "name": self.app_name if app_id == self.app_id else app_id,
                "link": f"https://www.facebook.com/games/?app_id={app_id}",
            }}
            item.update(subscription)
            data.append(item)
        return JSONResponse({"data": data})

    def _phone_numbers(self, request: Request, params: dict[str, Any], waba_id: str) -> Response:
        waba, _tok = self._waba(request, params, waba_id)
        try:
            limit = int(params.get("limit") or self.page_size)
        except ValueError:
            raise _Fail(400, 100, "(#100) Param limit must be a number") from None
        limit = max(1, limit)
        start = _uncursor(params["after"]) if params.get("after") else 0
        wanted = [f for f in str(params.get("fields") or "").split(",") if f]
        ids = waba.number_ids[start:start + limit]
        data = []
        for number_id in ids:
            values = self.numbers[number_id].fields()
            data.append({k: values[k] for k in ["id", *wanted] if k in values} if wanted else values)
        answer: dict[str, Any] = {"data": data}
        if ids:
            paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(ids))}}
            if start + len(ids) < len(waba.number_ids):
                paging["next"] = str(request.url.include_query_params(after=_cursor(start + len(ids))))
            answer["paging"] = paging
        return JSONResponse(answer)

    def _number_node(self, request: Request, params: dict[str, Any], phone_id: str) -> Response:
        number = self._number(request, params, phone_id)
        values = number.fields()
        wanted = [f for f in str(params.get("fields") or "").split(",") if f]
        return JSONResponse({k: values[k] for k in ["id", *wanted] if k in values} if wanted else values)

    def _register(self, request: Request, params: dict[str, Any], phone_id: str) -> Response:
        number = self._number(request, params, phone_id)
        now = self.now()
        number.register_calls = [t for t in number.register_calls if now - t < self.register_window]
        if len(number.register_calls) >= self.register_limit:
            raise _Fail(400, 133016, "(#133016) Account register deregister rate limit exceeded",
                        details="Too many register or deregister calls for this number in the last 72 hours.")
        number.register_calls.append(now)
        if params.get("messaging_product") != "whatsapp":
            raise _Fail(400, 100, "(#100) The parameter messaging_product is required and must be 'whatsapp'")
        if number.coexistence:
            raise _Fail(400, 100, "(#100) This phone number is registered on the WhatsApp Business app "
                        "(coexistence); it cannot be registered through the API.",
                        details="Skip /register for WhatsApp Business app (coexistence) numbers.")
        pin = str(params.get("pin") or "")
        if not re.fullmatch(r"[0-9]{6}", pin):
            raise _Fail(400, 100, "(#100) Invalid parameter", details="pin must be a 6-digit number")
        if number.pin is not None and not secrets.compare_digest(pin, number.pin):
            raise _Fail(400, 133005, "(#133005) Two step verification PIN Mismatch",
                        details="The PIN does not match the number's two-step verification PIN.")
        number.pin = pin
        number.registered = True
        return JSONResponse({"success": True})

    def _smb_app_data(self, request: Request, params: dict[str, Any], phone_id: str) -> Response:
        number = self._number(request, params, phone_id)
        if params.get("messaging_product") != "whatsapp":
            raise _Fail(400, 100, "(#100) The parameter messaging_product is required and must be 'whatsapp'")
        sync_type = params.get("sync_type")
        if sync_type not in SYNC_TYPES:
            raise _Fail(400, 100, "(#100) Param sync_type must be one of {smb_app_state_sync, history}")
        if not number.coexistence:
            raise _Fail(400, 100, "(#100) smb_app_data is only available for WhatsApp Business app "
                        "(coexistence) numbers")
        if sync_type in number.syncs:
            raise _Fail(400, 2593107, f"(#2593107) Synchronization of {sync_type} was already requested for this "
                        "phone number", details="Each sync type can be requested once; offboard and redo ES.")
        waba = self.wabas[number.waba_id]
        onboarded = waba.onboarded_at if waba.onboarded_at is not None else waba.created_at
        if self.now() - onboarded > self.sync_window:
            raise _Fail(400, 2593108, "(#2593108) Synchronization must be requested within 24 hours of onboarding",
                        details="The sync window after onboarding has passed; offboard and redo ES.")
        request_id = secrets.token_hex(16)
        number.syncs[sync_type] = request_id
        return JSONResponse({"messaging_product": "whatsapp", "request_id": request_id})


def serve_in_thread(
    emulator: GraphEmulator | Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10.0
) -> tuple[str, Callable[[], None]]:
    """Serve ``emulator`` (or any ASGI app) with uvicorn in a daemon thread.

    Returns ``(base_url, stop)``: ``base_url`` like ``http://127.0.0.1:54321`` (no version;
    pass it to ``GraphClient(base_url, "v25.0", ...)``), ``stop()`` shuts the server down and
    joins the thread. ``port=0`` picks a free port.
    """
    app = emulator.create_app() if hasattr(emulator, "create_app") else emulator
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="graph-emulator-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"server on {host}:{port} failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {host}:{port} did not start within {startup_timeout} s")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)

    return base_url, stop


__all__ = [
    "EmulatedNumber",
    "EmulatedToken",
    "EmulatedWaba",
    "EmulatorCall",
    "GraphEmulator",
    "SentWebhook",
    "serve_in_thread",
]
