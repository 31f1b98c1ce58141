"""A small synchronous Graph API client for the Embedded Signup back end.

Sync on purpose: the Dagster jobs that onboard customers are synchronous. Every method names
the Meta documentation page it implements.

Secrets
-------
* Business tokens always travel in the ``Authorization: Bearer`` header, never in the query.
* Two calls need secrets in the query string because Meta documents them that way:
  ``/oauth/access_token`` (``client_secret`` and the one-time ``code``) and ``/debug_token``
  (the app token ``access_token=APP_ID|APP_SECRET`` and the inspected ``input_token``).
* httpx logs every request URL, query included, at INFO on the ``httpx`` logger. The first
  :class:`GraphClient` therefore installs a filter on that logger that rewrites
  ``access_token``, ``client_secret``, ``input_token``, ``code`` and ``appsecret_proof`` query
  values to ``REDACTED`` (the project's :func:`wa_core.logs.configure_logging` also keeps
  ``httpx`` at WARNING). This module itself logs only method, path (no query) and the error
  string.
* Errors raised here never carry a URL query, and every token, the app secret and the app
  token are redacted from Meta's error messages (see :mod:`wa_core.meta.graph.errors`).
  Transport exceptions are not chained (``raise ... from None``) because httpx exceptions
  hold the request, whose URL may carry those query secrets.
* Never request ``paging.next`` as given: Meta puts the ``access_token`` in those URLs.
  Paging follows the ``after`` cursor on our own request instead.

Retries
-------
Each call is attempted at most ``1 + max_retries`` times (``max_retries=3`` → 4 attempts,
``max_retries=0`` → no retry), through :class:`tenacity.Retrying` with
``wait_exponential_jitter(initial=backoff_initial, max=backoff_max, exp_base=2,
jitter=backoff_jitter)``: before retry *n* (1-based) it sleeps
``min(backoff_max, backoff_initial * 2 ** (n - 1) + uniform(0, backoff_jitter))`` seconds,
i.e. with the defaults 1-2 s, 2-3 s, 4-5 s. Sleeping goes through the ``sleep`` callable given
to the constructor (tests pass a recorder). The last error is re-raised as is (never
:class:`tenacity.RetryError`).

Only errors with ``retryable=True`` are retried (:class:`RateLimited`,
:class:`TransientGraphError`), and for the calls that must not run twice (``exchange_code``:
the code is single-use; ``register``: counts towards 10 per 72 h; ``request_sync``: each sync
runs once) only when Meta certainly did not act: a rate-limit refusal, or a connection that
was never established (``request_sent=False``). A timeout or 5xx on those calls is raised at
once as :class:`TransientGraphError`; a later :class:`SyncAlreadyRequested` then means the
first ``request_sync`` did go through.

Rate limits are hourly at Meta (80007: 200 or 5000 calls/hour per WABA, Meta, WhatsApp Cloud API "Throughput" / "Error codes"), so a
few seconds of backoff helps with bursts only; a job that still gets :class:`RateLimited`
should reschedule itself rather than spin.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from wa_core.meta.graph.errors import (
    GraphError,
    GraphRequestError,
    RateLimited,
    TransientGraphError,
    error_from_response,
    redact,
)

log = logging.getLogger("wa_core.meta.graph")

SyncType = Literal["smb_app_state_sync", "history"]
SYNC_TYPES: tuple[str, ...] = ("smb_app_state_sync", "history")

#: ``fields`` requested from ``GET /{waba-id}/phone_numbers`` (Meta, Embedded Signup "Onboarding customers as a Tech Provider" and "Onboarding WhatsApp Business app users").
PHONE_NUMBER_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "code_verification_status",
    "quality_rating",
    "platform_type",
    "is_on_biz_app",
)

#: query parameters whose values are secrets (redacted from httpx's request log)
SENSITIVE_QUERY_PARAMS = frozenset({"access_token", "client_secret", "input_token", "code", "appsecret_proof"})

_NODE_ID = re.compile(r"^[0-9]{1,32}$")
_PIN = re.compile(r"^[0-9]{6}$")
_MEDIA_ID = re.compile(r"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9._-]{1,128}")  # use fullmatch: never "." or "..", no newline
_MAX_PAGES = 1000
USER_AGENT = "wa-onboarding-graph/1"


class _RedactQueryFilter(logging.Filter):
    """Rewrites secret query values in httpx's ``HTTP Request: GET <url> ...`` log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, httpx.URL) for a in args):
            record.args = tuple(_redacted_url(a) if isinstance(a, httpx.URL) else a for a in args)
        return True


def _redacted_url(url: httpx.URL) -> httpx.URL:
    items = url.params.multi_items()
    if not any(key in SENSITIVE_QUERY_PARAMS for key, _ in items):
        return url
    return url.copy_with(params=[(k, "REDACTED" if k in SENSITIVE_QUERY_PARAMS else v) for k, v in items])


def install_httpx_log_redaction() -> None:
    """Add the query-redacting filter to the ``httpx`` logger (idempotent)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactQueryFilter) for f in logger.filters):
        logger.addFilter(_RedactQueryFilter())


def _node(value: str, what: str) -> str:
    """A Graph node id (digits only), so that an id can never change the request path."""
    value = str(value)
    if not _NODE_ID.match(value):
        raise ValueError(f"{what} must be a numeric Graph id")
    return value


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else str(value)


class GraphClient:
    """Graph API calls of the Embedded Signup back end (Tech Provider path).

    ``base_url`` is the host root (``https://graph.facebook.com``), ``version`` the API
    version (``v25.0``); requests go to ``{base_url}/{version}/...``. ``transport`` replaces
    the network (e.g. :class:`httpx.MockTransport`), ``sleep`` the backoff sleep. See the
    module docstring for retries and secret handling. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        app_id: str | None,
        app_secret: str | None,
        app_access_token: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_jitter: float = 1.0,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.app_id = app_id
        self._app_secret = app_secret
        self._app_access_token = app_access_token
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self._sleep = sleep
        self.api_url = f"{base_url.rstrip('/')}/{version.strip('/')}"
        install_httpx_log_redaction()
        self._http = httpx.Client(
            base_url=self.api_url + "/",
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> GraphClient:
        """A client configured from :class:`wa_core.settings.Settings` (``GRAPH_API_BASE_URL``,
        ``GRAPH_API_VERSION``, ``META_APP_ID``, ``META_APP_SECRET``, ``META_APP_ACCESS_TOKEN``);
        ``kwargs`` go to the constructor (timeout, max_retries, transport, sleep, ...)."""
        return cls(
            settings.graph_api_base_url,
            settings.graph_api_version,
            app_id=settings.meta_app_id,
            app_secret=_secret(settings.meta_app_secret),
            app_access_token=_secret(settings.meta_app_access_token),
            **kwargs,
        )

    # --- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GraphClient(api_url={self.api_url!r}, app_id={self.app_id!r})"

    # --- Embedded Signup back end (Meta, "Onboarding customers as a Tech Provider") --
    def exchange_code(self, code: str) -> dict[str, Any]:
        """Exchange the Embedded Signup ``code`` for a business token (Meta, "Onboarding customers as a Tech Provider", step 1).

        ``GET /oauth/access_token?client_id=&client_secret=&code=``, server to server, within
        30 s of the customer finishing ES (the code's lifetime, §0/§5.1). Returns Meta's JSON:
        ``access_token``, ``token_type`` and, when the token expires, ``expires_in`` (§6). A
        bare-string body (as Meta's page shows it) is returned as ``{"access_token": text}``.
        Not retried after it may have reached Meta: the code is single-use.
        """
        if not self.app_id or not self._app_secret:
            raise ValueError("exchange_code needs app_id and app_secret")
        if not code:
            raise ValueError("exchange_code needs a code")
        params = {"client_id": self.app_id, "client_secret": self._app_secret, "code": code}
        response = self._call("GET", "oauth/access_token", params=params, idempotent=False, secrets=(code,))
        payload = _json_or_none(response)
        if isinstance(payload, dict) and isinstance(payload.get("access_token"), str):
            return payload
        if isinstance(payload, str) and payload.strip():
            return {"access_token": payload.strip()}
        text = response.text.strip()
        if payload is None and text and not any(ch.isspace() for ch in text):
            return {"access_token": text}
        raise GraphRequestError(
            "token exchange answered without an access_token",
            http_status=response.status_code,
            method="GET",
            path=response.request.url.path,
        )

    def subscribe_app(self, waba_id: str, token: str) -> bool:
        """Subscribe the app to the customer's WABA webhooks (Meta, "Onboarding customers as a Tech Provider", step 2; "Subscribed apps").

        ``POST /{waba-id}/subscribed_apps`` with the business token → ``{"success": true}``.
        Without a body, as here, this also removes a WABA-level ``override_callback_uri``.
        """
        payload = self._json("POST", f"{_node(waba_id, 'waba_id')}/subscribed_apps", token=token)
        return bool(payload.get("success"))

    def subscribed_apps(self, waba_id: str, token: str) -> list[dict[str, Any]]:
        """Apps subscribed to the WABA (Meta, WhatsApp Cloud API "Subscribed apps" reference): ``GET /{waba-id}/subscribed_apps`` →
        ``data[{whatsapp_business_api_data{id, name, link}, override_callback_uri?}]``."""
        return self._paged(f"{_node(waba_id, 'waba_id')}/subscribed_apps", token, {})

    def unsubscribe_app(self, waba_id: str, token: str) -> bool:
        """Unsubscribe the app from the WABA: ``DELETE /{waba-id}/subscribed_apps`` → success
        (Meta, WhatsApp Cloud API "Subscribed apps" reference)."""
        payload = self._json("DELETE", f"{_node(waba_id, 'waba_id')}/subscribed_apps", token=token)
        return bool(payload.get("success"))

    def phone_numbers(self, waba_id: str, token: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The WABA's numbers (Meta, "Onboarding customers as a Tech Provider"; "Onboarding WhatsApp Business app users" for ``is_on_biz_app``/``platform_type``).

        ``GET /{waba-id}/phone_numbers?fields=id,display_phone_number,verified_name,
        code_verification_status,quality_rating,platform_type,is_on_biz_app``, following the
        ``after`` cursor while ``paging.next`` is present. ``limit`` is the page size asked for.
        """
        params: dict[str, Any] = {"fields": ",".join(PHONE_NUMBER_FIELDS)}
        if limit is not None:
            params["limit"] = int(limit)
        return self._paged(f"{_node(waba_id, 'waba_id')}/phone_numbers", token, params)

    def register(
        self, phone_number_id: str, token: str, pin: str, *, data_localization_region: str | None = None
    ) -> bool:
        """Register a Cloud API number (Meta, WhatsApp Cloud API "Registration"; Tech Provider onboarding step 3).

        ``POST /{phone-number-id}/register {"messaging_product": "whatsapp", "pin": "<6 digits>"}``.
        If two-step verification is on, ``pin`` must be the existing PIN. Limit: 10 register or
        deregister calls per number per 72 h (:class:`RegisterLimit`, 133016). **Skip for
        coexistence numbers** (``is_on_biz_app``), which are already registered on the app.
        """
        if not _PIN.match(pin or ""):
            raise ValueError("pin must be 6 digits")
        body: dict[str, Any] = {"messaging_product": "whatsapp", "pin": pin}
        if data_localization_region:
            body["data_localization_region"] = data_localization_region
        payload = self._json(
            "POST", f"{_node(phone_number_id, 'phone_number_id')}/register", token=token, body=body,
            idempotent=False, secrets=(pin,),
        )
        return bool(payload.get("success"))

    def request_sync(self, phone_number_id: str, token: str, sync_type: SyncType) -> str:
        """Ask Meta to sync a coexistence number's contacts or chat history (Meta, "Onboarding WhatsApp Business app users").

        ``POST /{phone-number-id}/smb_app_data {"messaging_product": "whatsapp", "sync_type":
        "smb_app_state_sync" | "history"}`` → ``request_id`` (the request was accepted; the
        data arrives by webhook). Each sync type can be requested once
        (:class:`SyncAlreadyRequested`, 2593107) and only within 24 h of onboarding
        (:class:`SyncWindowExpired`, 2593108). Never retried after it may have reached Meta.
        """
        if sync_type not in SYNC_TYPES:
            raise ValueError(f"sync_type must be one of {SYNC_TYPES}")
        payload = self._json(
            "POST", f"{_node(phone_number_id, 'phone_number_id')}/smb_app_data", token=token,
            body={"messaging_product": "whatsapp", "sync_type": sync_type}, idempotent=False,
        )
        request_id = payload.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise GraphRequestError("smb_app_data answered without a request_id", method="POST", path="smb_app_data")
        return request_id

    # --- tokens (Meta, Graph API "debug_token"; WhatsApp "Access tokens") -----------
    def debug_token(self, input_token: str) -> dict[str, Any]:
        """Inspect a token (Meta, Graph API "debug_token" reference): ``GET /debug_token?input_token=…&access_token=<app token>``.

        The app token is ``app_access_token`` or ``APP_ID|APP_SECRET``; both tokens must
        belong to the same app. Returns the ``data`` object: ``app_id``, ``type``,
        ``expires_at`` (0 = never), ``is_valid``, ``scopes``, ``granular_scopes``, and
        ``error`` when invalid. An invalid ``input_token`` is *not* an exception (Meta answers
        200 with ``is_valid: false``); an invalid app token is (:class:`TokenInvalid`).
        """
        app_token = self._app_token()
        if not input_token:
            raise ValueError("debug_token needs an input_token")
        payload = self._json(
            "GET", "debug_token", params={"input_token": input_token, "access_token": app_token},
            secrets=(input_token,),
        )
        data = payload.get("data")
        if not isinstance(data, dict):
            raise GraphRequestError("debug_token answered without data", method="GET", path="debug_token")
        return data

    def debug_app_token(self) -> dict[str, Any]:
        """``debug_token`` on the app token itself (``input_token`` = ``access_token`` = the app
        token): Meta answers ``type: "APP"``, ``app_id`` and ``is_valid``. A wrong app id or
        secret raises :class:`TokenInvalid` (190). Used by ``wa-onboarding doctor``."""
        return self.debug_token(self._app_token())

    def app_subscriptions(self) -> list[dict[str, Any]]:
        """The app's webhook subscriptions: ``GET /{app-id}/subscriptions`` with the app token
        (Graph reference "Application Subscriptions", "Subscriptions Edge") → one item per
        object: ``{"object": "whatsapp_business_account", "callback_url", "active": bool,
        "fields": [{"name", "version"}]}``. Raises :class:`TokenInvalid` for a wrong app token."""
        app_id = _node(self.app_id or "", "app_id")
        payload = self._json("GET", f"{app_id}/subscriptions", params={"access_token": self._app_token()})
        data = payload.get("data")
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    # --- media (Meta, WhatsApp Cloud API "Media") --------------------------------------------
    def media_info(self, media_id: str, token: str, *, phone_number_id: str | None = None) -> dict[str, Any]:
        """Step 1 of a media download (Meta, WhatsApp Cloud API "Media": download): ``GET /{media-id}[?phone_number_id=]``
        with the business token → ``{"url", "mime_type", "sha256", "file_size", "id"}``.

        ``url`` lives 5 minutes and needs the same bearer token (step 2 is
        :func:`wa_core.media.fetch.fetch_media`). ``file_size`` comes back as a string or a
        number (§9.1): returned as Meta sent it. Raises :class:`GraphRequestError` when the
        answer has no ``url``, the typed :class:`GraphError` of Meta's error otherwise (an
        unknown or expired id: code 100, §9.3).
        """
        if not _MEDIA_ID.fullmatch(str(media_id)):
            raise ValueError("media_id must be [A-Za-z0-9._-]+")
        params = {"phone_number_id": _node(phone_number_id, "phone_number_id")} if phone_number_id else None
        payload = self._json("GET", str(media_id), token=token, params=params)
        if not isinstance(payload.get("url"), str) or not payload["url"].startswith(("https://", "http://")):
            raise GraphRequestError("media answered without a url", method="GET", path=f"/{media_id}")
        return payload

    # --- plumbing ---------------------------------------------------------------------
    def _app_token(self) -> str:
        if self._app_access_token:
            return self._app_access_token
        if self.app_id and self._app_secret:
            return f"{self.app_id}|{self._app_secret}"
        raise ValueError("debug_token needs app_access_token or app_id and app_secret")

    def _json(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        secrets: Iterable[str | None] = (),
    ) -> dict[str, Any]:
        response = self._call(method, path, token=token, params=params, body=body, idempotent=idempotent, secrets=secrets)
        payload = _json_or_none(response)
        if not isinstance(payload, dict):
            raise GraphRequestError(
                "answer is not a JSON object", http_status=response.status_code, method=method,
                path=response.request.url.path,
            )
        return payload

    def _paged(self, path: str, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        query = dict(params)
        for _ in range(_MAX_PAGES):
            payload = self._json("GET", path, token=token, params=query or None)
            data = payload.get("data")
            if isinstance(data, list):
                items.extend(item for item in data if isinstance(item, dict))
            paging = payload.get("paging") if isinstance(payload.get("paging"), dict) else {}
            if not paging.get("next"):
                break
            after = _after_cursor(paging)
            if not after or after in seen:
                break
            seen.add(after)
            query = {**params, "after": after}
        return items

    def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        secrets: Iterable[str | None] = (),
    ) -> httpx.Response:
        all_secrets = (token, self._app_secret, self._app_access_token, *secrets)
        if self.app_id and self._app_secret:
            all_secrets += (f"{self.app_id}|{self._app_secret}",)

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, GraphError) or not exc.retryable:
                return False
            return idempotent or isinstance(exc, RateLimited) or not exc.request_sent

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "Graph %s /%s failed (%s); retry %d of %d in %.1f s",
                method, path, exc, state.attempt_number, self.max_retries, delay,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(
                initial=self.backoff_initial, max=self.backoff_max, exp_base=2, jitter=self.backoff_jitter
            ),
            retry=retry_if_exception(should_retry),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._send_once, method, path, token, params, body, all_secrets)

    def _send_once(
        self,
        method: str,
        path: str,
        token: str | None,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        secrets: tuple[str | None, ...],
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        where = f"{self._http.base_url.path.rstrip('/')}/{path}"  # path only: the query may hold secrets
        try:
            response = self._http.request(method, path, params=params, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientGraphError(
                redact(f"connection failed ({type(exc).__name__}: {exc})", secrets),
                method=method, path=where, request_sent=False,
            ) from None
        except httpx.TimeoutException as exc:
            raise TransientGraphError(
                redact(f"request timed out ({type(exc).__name__})", secrets), method=method, path=where
            ) from None
        except httpx.HTTPError as exc:
            raise TransientGraphError(
                redact(f"transport error ({type(exc).__name__}: {exc})", secrets), method=method, path=where
            ) from None
        payload = _json_or_none(response)
        if response.status_code >= 400 or (isinstance(payload, dict) and "error" in payload):
            raise error_from_response(
                response.status_code, payload, secrets=secrets, method=method, path=response.request.url.path
            )
        return response


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _after_cursor(paging: dict[str, Any]) -> str | None:
    cursors = paging.get("cursors")
    if isinstance(cursors, dict) and isinstance(cursors.get("after"), str) and cursors["after"]:
        return cursors["after"]
    nxt = paging.get("next")
    if isinstance(nxt, str):
        try:
            value = httpx.URL(nxt).params.get("after")
        except (httpx.InvalidURL, ValueError):
            return None
        return value or None
    return None


__all__ = ["GraphClient", "PHONE_NUMBER_FIELDS", "SyncType", "install_httpx_log_redaction"]
