"""Typed Graph API errors, mapped from Meta's error payload.

Meta answers a failed Graph call with::

    {"error": {"message": "...", "type": "OAuthException", "code": 190, "error_subcode": 463,
               "error_data": {"details": "..."}, "is_transient": false, "fbtrace_id": "..."}}

Sources: Meta, Graph API "Handling errors" and Meta, WhatsApp Cloud API "Error codes":
build logic on ``error.code`` (and ``error_data.details``), **never on the HTTP status or
``error_subcode``** (subcodes are deprecated for WhatsApp errors since v16, and every rate
limit comes back as HTTP 400, never 429). The HTTP status is only used when the body carries
no Graph error at all (a 5xx from a proxy, an HTML page), or to recognize a server-side
failure whose code is not one we know.

Classes and codes (``retryable``: whether repeating the same call later can succeed):

- :class:`TokenInvalid`: 190 (also 102, 463, 467). Not retryable.
- :class:`PermissionDenied`: 10 and 200-299. Not retryable.
- :class:`RateLimited`: 4, 17, 32, 613, 80007, 130429, 131056. Retryable.
- :class:`RegisterLimit`: 133016 (10 register/deregister calls per number per 72 h). Not retryable.
- :class:`SyncAlreadyRequested`: 2593107 (each ``smb_app_data`` sync type once). Not retryable.
- :class:`SyncWindowExpired`: 2593108 (sync only within 24 h of onboarding). Not retryable.
- :class:`TransientGraphError`: codes 1 and 2, any unclassified code with HTTP 5xx, a 5xx
  without a Graph error body, timeouts and connection errors. Retryable.
- :class:`GraphRequestError`: anything else (a 4xx with another code or no Graph error). Not retryable.

Two exceptions to "codes 1 and 2 are transient": a payload with ``"is_transient": false``,
and credential failures. Meta answers a wrong ``client_secret`` on ``/oauth/access_token``
with ``{"message": "Error validating client secret.", "type": "OAuthException", "code": 1}``
(observed, e.g. facebookarchive/php-graph-sdk#538); retrying that never helps, so a code 1
whose message starts with ``Error validating`` is a :class:`GraphRequestError`. (``type`` is
no help: Meta's genuinely transient code 1/2 errors are ``OAuthException`` too.)

Error messages never carry tokens: :func:`error_from_response` replaces every string given
in ``secrets`` with ``[redacted]``, and :class:`GraphError` never stores a request URL (only
the path, without its query string).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"

TOKEN_INVALID_CODES = frozenset({190, 102, 463, 467})
PERMISSION_CODES = frozenset({10, *range(200, 300)})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
REGISTER_LIMIT_CODE = 133016
SYNC_ALREADY_REQUESTED_CODE = 2593107
SYNC_WINDOW_EXPIRED_CODE = 2593108
TRANSIENT_CODES = frozenset({1, 2})


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every non-empty string of ``secrets`` replaced by ``[redacted]``."""
    # longest first, so a secret that contains another one is removed whole
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class GraphError(Exception):
    """A failed Graph API call.

    Attributes:
        code: Meta's ``error.code`` (``None`` when the answer carried no Graph error).
        subcode: ``error.error_subcode`` (informational only; do not branch on it).
        message: Meta's ``error.message`` (secrets redacted), or a description of the failure.
        http_status: HTTP status of the answer (``None`` for timeouts and connection errors).
        fbtrace_id: Meta's trace id, to quote to Meta support.
        error_type: ``error.type`` (e.g. ``OAuthException``).
        details: ``error.error_data.details`` (Meta's human-readable detail), if any.
        method, path: the request's method and URL path (never the query string).
        retryable: True when the same call may succeed later (rate limits, transient failures).
        request_sent: False only when the request certainly never reached Meta (connection
            refused, connect timeout); a non-idempotent call can then be repeated safely.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        http_status: int | None = None,
        fbtrace_id: str | None = None,
        error_type: str | None = None,
        details: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retryable: bool | None = None,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.http_status = http_status
        self.fbtrace_id = fbtrace_id
        self.error_type = error_type
        self.details = details
        self.method = method
        self.path = path
        self.request_sent = request_sent
        if retryable is not None:
            self.retryable = retryable  # instance attribute shadows the class default

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only arguments: rebuild from the attributes so errors survive pickling
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        if self.code is None:
            return f"Graph error: {self.message}"
        return f"Graph error {self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, subcode={self.subcode!r}, http_status={self.http_status!r}, "
            f"message={self.message!r}, method={self.method!r}, path={self.path!r}, fbtrace_id={self.fbtrace_id!r})"
        )


def _rebuild(cls: type[GraphError], message: str, state: dict[str, Any]) -> GraphError:
    # bypass __init__: subclasses elsewhere may take other arguments (or none)
    error = cls.__new__(cls, message)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class TokenInvalid(GraphError):
    """190 (and 102, 463, 467): the access token is expired, invalidated or unparseable.

    Meta does not notify you when a business token dies (the customer removed the app,
    changed password, the token expired): this error is how you find out (Meta, Graph API "Handling errors", access token errors).
    """


class PermissionDenied(GraphError):
    """10 or 200-299: the token lacks a permission or the object is not shared with the app."""


class RateLimited(GraphError):
    """4 (app), 80007 (WABA), 130429 (throughput), 131056 (pair rate), 17/32/613 (user, page,
    custom): a rate limit. Returned as HTTP 400, never 429 (Meta, WhatsApp Cloud API "Error codes")."""

    retryable = True


class RegisterLimit(GraphError):
    """133016: more than 10 register/deregister calls for this number in 72 h (Meta, WhatsApp Cloud API "Registration")."""


class SyncAlreadyRequested(GraphError):
    """2593107: this ``smb_app_data`` sync type was already requested (each runs once, §4)."""


class SyncWindowExpired(GraphError):
    """2593108: ``smb_app_data`` is only accepted within 24 h of onboarding (§4)."""


class TransientGraphError(GraphError):
    """Codes 1 and 2, HTTP 5xx, timeouts and connection errors: try again later."""

    retryable = True


class GraphRequestError(GraphError):
    """Any other error (a 4xx with a code we do not classify): the request itself is wrong."""


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _classify(code: int | None, http_status: int, message: str, is_transient: Any) -> type[GraphError]:
    if code is not None:
        if code in TOKEN_INVALID_CODES:
            return TokenInvalid
        if code in PERMISSION_CODES:
            return PermissionDenied
        if code in RATE_LIMIT_CODES:
            return RateLimited
        if code == REGISTER_LIMIT_CODE:
            return RegisterLimit
        if code == SYNC_ALREADY_REQUESTED_CODE:
            return SyncAlreadyRequested
        if code == SYNC_WINDOW_EXPIRED_CODE:
            return SyncWindowExpired
        if code in TRANSIENT_CODES:
            # "Error validating client secret." is code 1 too, and is not transient.
            if is_transient is False or (code == 1 and message.startswith("Error validating")):
                return GraphRequestError
            return TransientGraphError
    if http_status >= 500:
        return TransientGraphError
    return GraphRequestError


def error_from_response(
    status: int,
    payload: Any,
    *,
    secrets: Iterable[str | None] = (),
    method: str | None = None,
    path: str | None = None,
) -> GraphError:
    """The typed error for an HTTP answer with ``status`` and decoded body ``payload``.

    ``payload`` is normally the parsed JSON (``{"error": {...}}``); a ``str``/``bytes`` body is
    parsed here, and anything that is not a Graph error payload gives an error chosen by
    HTTP status (5xx → :class:`TransientGraphError`, else :class:`GraphRequestError`) whose
    message does not quote the body. Every string in ``secrets`` is redacted from the
    message and details. ``path`` must not contain a query string.
    """
    if isinstance(payload, (bytes, bytearray)):
        payload = payload.decode("utf-8", errors="replace")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = None
    secrets = tuple(secrets)
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        cls = TransientGraphError if status >= 500 else GraphRequestError
        return cls(f"HTTP {status} without a Graph error payload", http_status=status, method=method, path=path)

    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    raw_message = error.get("message")
    message = redact(raw_message, secrets) if isinstance(raw_message, str) and raw_message else f"HTTP {status}"
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    details = redact(details, secrets) if isinstance(details, str) else None
    fbtrace_id = error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None
    cls = _classify(code, status, raw_message if isinstance(raw_message, str) else "", error.get("is_transient"))
    return cls(
        message,
        code=code,
        subcode=subcode,
        http_status=status,
        fbtrace_id=fbtrace_id,
        error_type=error_type,
        details=details,
        method=method,
        path=path,
    )


__all__ = [
    "GraphError",
    "GraphRequestError",
    "PermissionDenied",
    "RateLimited",
    "RegisterLimit",
    "SyncAlreadyRequested",
    "SyncWindowExpired",
    "TokenInvalid",
    "TransientGraphError",
    "error_from_response",
    "redact",
]
