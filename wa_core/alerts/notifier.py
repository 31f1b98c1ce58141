"""Operator alerts: one small notifier with pluggable sinks (log always, Sentry, Slack).

Contract (used by asset checks, sensors, processing and the receiver):

* :class:`Alert` ``(kind, key, summary, severity='error', details={}, organization_id=None)``;
  its ``fingerprint`` is ``"kind:key"``.
* :class:`Notifier` ``.notify(alert) -> bool``: True when the sinks were called, False when the
  alert was grouped with an open one of the same fingerprint sent less than
  ``ALERT_REPEAT_SECONDS`` ago. ``.resolve(kind, key) -> bool`` closes an open alert.
* :func:`get_notifier(settings, engine)`.

Sinks: the log always (one ``ALERT …`` line, level by severity); Sentry when ``SENTRY_DSN``
is set (a dedicated sentry-sdk client: no global ``init``, no integrations, so the service's
own error logs are never forwarded and the alert's ``[kind, key]`` fingerprint groups the
issue in Sentry too); a Slack incoming webhook when ``SLACK_WEBHOOK_URL`` is set. A sink that
fails logs a warning (the exception type, never the URL) and the others still run; nothing
ever raises into the caller. An invalid ``SENTRY_DSN`` is logged once per process and DSN.

Network sends are bounded in total time (``SEND_TIMEOUT_SECONDS``), not only per read: the
Slack post runs on a short-lived daemon thread the caller waits for at most that long (a
server trickling its answer keeps only that thread, never the caller; at most
``MAX_SLOW_POSTS`` such threads at once). Sentry delivery is checked per event through a
transport subclass that records what happened to each envelope (a non-2xx answer, a network
error, a rate limit); the sink raises when its event failed or was not delivered within the
timeout, so the notifier logs ``alert sink sentry failed``. Limitation: a DSN whose server
accepts the envelope (2xx) and later drops it cannot be detected from here.

Grouping: with an ``engine`` the state lives in ``ops_alerts`` (one row per fingerprint), so
every process (sensors, runs, checks) shares it; without one (the receiver's request path)
it lives in a process-wide dict with the same rule. An open alert sent less than
``ALERT_REPEAT_SECONDS`` ago only counts an occurrence; a resolved alert that occurs again
reopens (``first_seen_at`` and ``occurrences`` start again) and is sent. ``resolve`` also
posts a short "resolved" notice to Slack (Sentry has its own resolve workflow).

Without an engine the network sinks (Sentry, Slack) run on background threads (one per
sink, so each sink gets its messages in order), so a call from a request path never waits
for the network; with an engine they run in the
calling thread (sensors, runs and checks are synchronous and must not lose the send when
their process ends).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from datetime import datetime
from hashlib import sha256
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

log = logging.getLogger("wa_core.alerts")

#: the alert kinds the service raises
ALERT_KINDS = (
    "unclaimed_waba",
    "token_unhealthy",
    "dead_letter",
    "rate_limit_exceeded",
    "redis_down",
    "run_failed",
    "asset_check_failed",
)
#: accepted severities (the ``ops_alerts`` check constraint); anything else is sent as "error"
SEVERITIES = ("info", "warning", "error", "critical")
#: seconds a network sink may take (connect + send); Sentry's flush waits at most this long
SEND_TIMEOUT_SECONDS = 5.0
#: in-process grouping keeps at most this many fingerprints (least recently seen dropped)
MEMORY_MAX_FINGERPRINTS = 10_000
#: background sends waiting at most; beyond, a network send is dropped with a warning
MAX_PENDING_SENDS = 100
#: Slack posts still running past their deadline at most; beyond, a post fails at once
MAX_SLOW_POSTS = 4

_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_SENTRY_LEVELS = {"info": "info", "warning": "warning", "error": "error", "critical": "fatal"}
_SLACK_ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:", "critical": ":fire:"}
_MAX_SUMMARY = 1000
_MAX_DETAIL_VALUE = 500


@dataclass(frozen=True)
class Alert:
    """One alert. ``key`` names the cause within ``kind`` (a WABA id, a phone_number_id, a job
    or check name); ``summary`` is one line without personal data."""

    kind: str
    key: str
    summary: str
    severity: str = "error"
    details: Mapping[str, Any] = field(default_factory=dict)
    organization_id: uuid.UUID | None = None

    @property
    def fingerprint(self) -> str:
        """Grouping key: ``"kind:key"``."""
        return f"{self.kind}:{self.key}"


# --- sinks -------------------------------------------------------------------------------


@runtime_checkable
class Sink(Protocol):
    """Where a sent alert goes. ``send`` may raise: the notifier catches, logs a warning and
    carries on with the other sinks. ``blocking`` sinks do network I/O and are moved off the
    caller's thread when the notifier runs in background mode."""

    name: str
    blocking: bool

    def send(self, alert: Alert, occurrences: int) -> None:
        """Deliver ``alert``; ``occurrences`` counts it since it was first seen (≥ 1)."""
        ...


class LogSink:
    """One structured ``ALERT <kind>:<key> [<severity>] <summary>`` line on ``wa_core.alerts``
    at the level of the severity (info/warning/error/critical); kind, key, severity, occurrences,
    details and organization id go in the record's extras (``LOG_FORMAT=json`` shows them)."""

    name = "log"
    blocking = False

    def send(self, alert: Alert, occurrences: int) -> None:
        """Write the line (never raises for a normal logging set-up)."""
        suffix = f" (occurrences: {occurrences})" if occurrences > 1 else ""
        log.log(
            _LOG_LEVELS.get(alert.severity, logging.ERROR),
            "ALERT %s [%s] %s%s",
            alert.fingerprint,
            alert.severity,
            alert.summary,
            suffix,
            extra=_log_extra(alert, occurrences),
        )

    def send_resolved(self, kind: str, key: str) -> None:
        """Write an INFO ``ALERT resolved <kind>:<key>`` line."""
        log.info("ALERT resolved %s:%s", kind, key, extra={"alert_kind": kind, "alert_key": key})


_sentry_lock = threading.Lock()
_sentry_clients: dict[tuple[str, str], Any] = {}
#: SHA-256 of the DSNs already reported as invalid (the warning is logged once per process)
_sentry_bad_dsns: set[str] = set()
_tracking_transport: Any = None
#: delivery outcomes kept per transport at most (events whose sender stopped waiting)
_MAX_OUTCOMES = 1000


class SentryDeliveryError(RuntimeError):
    """A Sentry event was not accepted: ``reason`` is the transport's loss reason
    (``status_500``, ``network``, ``status_429``, ``self_rate_limits``…; never the DSN)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tracking_transport_class() -> Any:
    """sentry-sdk's ``HttpTransport`` recording each event's delivery outcome (built lazily:
    sentry-sdk is imported only when a DSN is set).

    The transport sends on its one worker thread; ``_send_envelope`` notes the loss reason
    its hooks report (``_handle_request_error``: network errors and non-2xx answers;
    ``on_dropped_event``: rate limits, a full queue) and stores ``"ok"`` or that reason under
    the envelope's ``event_id``. :meth:`outcome` waits for it."""
    global _tracking_transport
    if _tracking_transport is not None:
        return _tracking_transport
    from sentry_sdk.transport import HttpTransport

    class TrackingTransport(HttpTransport):
        def __init__(self, options: dict[str, Any]) -> None:
            super().__init__(options)
            self._outcome_cond = threading.Condition()
            self._outcomes: OrderedDict[str, str] = OrderedDict()
            self._local = threading.local()  # the loss reason of the send in this thread

        def _fail(self, reason: str) -> None:
            if getattr(self._local, "failure", None) is None:
                self._local.failure = reason

        def on_dropped_event(self, reason: str) -> None:
            self._fail(reason)
            super().on_dropped_event(reason)

        def _handle_request_error(self, envelope: Any, loss_reason: str = "network", record_reason: str = "network_error") -> None:
            self._fail(loss_reason)
            super()._handle_request_error(envelope, loss_reason, record_reason)

        def _send_envelope(self, envelope: Any) -> None:
            self._local.failure = None
            try:
                super()._send_envelope(envelope)
            except BaseException:
                self._fail("network")
                raise
            finally:
                self._note(envelope.headers.get("event_id"), self._local.failure or "ok")

        def capture_envelope(self, envelope: Any) -> None:
            self._local.failure = None
            super().capture_envelope(envelope)
            if self._local.failure == "full_queue":  # dropped before reaching the worker
                self._note(envelope.headers.get("event_id"), "full_queue")

        def _note(self, event_id: str | None, outcome: str) -> None:
            if not event_id:
                return
            with self._outcome_cond:
                self._outcomes[event_id] = outcome
                while len(self._outcomes) > _MAX_OUTCOMES:
                    self._outcomes.popitem(last=False)
                self._outcome_cond.notify_all()

        def outcome(self, event_id: str, timeout: float) -> str | None:
            """``"ok"``, a loss reason, or None when nothing happened within ``timeout`` s."""
            deadline = time.monotonic() + timeout
            with self._outcome_cond:
                while event_id not in self._outcomes:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._outcome_cond.wait(left)
                return self._outcomes.pop(event_id)

    _tracking_transport = TrackingTransport
    return TrackingTransport


def _sentry_client(dsn: str, environment: str) -> Any:
    """One dedicated ``sentry_sdk.Client`` per (DSN, environment) and process, with the
    outcome-tracking transport."""
    with _sentry_lock:
        client = _sentry_clients.get((dsn, environment))
        if client is None:
            import sentry_sdk

            client = sentry_sdk.Client(
                dsn=dsn,
                transport=_tracking_transport_class(),
                environment=environment,
                default_integrations=False,  # no logging/excepthook hooks: alerts only
                auto_enabling_integrations=False,
                integrations=[],
                send_default_pii=False,
                send_client_reports=False,
                max_breadcrumbs=0,
                attach_stacktrace=False,
                include_local_variables=False,
                shutdown_timeout=SEND_TIMEOUT_SECONDS,
            )
            _sentry_clients[(dsn, environment)] = client
        return client


class SentrySink:
    """Sentry through a dedicated sentry-sdk client (no global ``sentry_sdk.init``).

    Each alert is one message event: level from the severity (critical → fatal), tags
    ``kind``, ``key``, ``severity``, ``environment``, fingerprint ``[kind, key]`` so Sentry
    groups repeats into one issue, details and occurrences as extra data. The send is
    flushed with a timeout of ``timeout`` seconds. An invalid DSN raises
    ``sentry_sdk.utils.BadDsn`` when the sink is built (the notifier then skips the sink
    with a warning, once per process and DSN).
    """

    name = "sentry"
    blocking = True

    def __init__(self, dsn: str, environment: str, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        self.environment = environment
        self.timeout = timeout
        self._client = _sentry_client(dsn, environment)

    def send(self, alert: Alert, occurrences: int) -> None:
        """Capture the event and wait (≤ ``timeout`` s in all) for Sentry to accept it.

        Raises :class:`SentryDeliveryError` when the server answered non-2xx, the connection
        failed or the event was rate limited or dropped, and ``TimeoutError`` when it was not
        delivered within ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        event: dict[str, Any] = {
            "message": f"{alert.kind} {alert.key}: {alert.summary}",
            "level": _SENTRY_LEVELS.get(alert.severity, "error"),
            "logger": "wa_core.alerts",
            "environment": self.environment,
            "fingerprint": [alert.kind, alert.key],
            "tags": {
                "kind": alert.kind,
                "key": alert.key[:200],
                "severity": alert.severity,
                "environment": self.environment,
            },
            "extra": {
                "occurrences": occurrences,
                "details": dict(alert.details),
                "organization_id": str(alert.organization_id) if alert.organization_id else None,
            },
        }
        event_id = self._client.capture_event(event)
        if event_id is None:
            raise SentryDeliveryError("dropped")
        self._client.flush(timeout=max(deadline - time.monotonic(), 0.001))
        outcome_of = getattr(self._client.transport, "outcome", None)
        if outcome_of is None:  # another transport: delivery cannot be checked
            return
        outcome = outcome_of(event_id, max(deadline - time.monotonic(), 0.0))
        if outcome is None:
            raise TimeoutError(f"Sentry event not delivered within {self.timeout} s")
        if outcome != "ok":
            raise SentryDeliveryError(outcome)


#: Slack posts in flight (including those abandoned past their deadline)
_slow_posts = threading.BoundedSemaphore(MAX_SLOW_POSTS)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSink:
    """A Slack incoming webhook: ``POST {"text": …}`` with httpx, ``timeout`` seconds at most.

    The text reads ``<icon> *ERROR* [environment] `kind` key: summary``, then the
    occurrences when more than one and one ``• name: value`` line per detail (≤ 3000
    characters in all). Raises on a transport error or a non-2xx answer (the notifier logs
    the exception type and status, never the URL, which is a secret).
    """

    name = "slack"
    blocking = True

    def __init__(self, url: str, environment: str, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        self._url = url
        self.environment = environment
        self.timeout = timeout

    def text(self, alert: Alert, occurrences: int) -> str:
        """The message text for ``alert`` (Slack mrkdwn, escaped)."""
        icon = _SLACK_ICONS.get(alert.severity, ":rotating_light:")
        lines = [
            f"{icon} *{alert.severity.upper()}* [{_slack_escape(self.environment)}] "
            f"`{_slack_escape(alert.kind)}` {_slack_escape(alert.key)}: {_slack_escape(alert.summary)}"
        ]
        if occurrences > 1:
            lines.append(f"occurrences since first seen: {occurrences}")
        for name, value in alert.details.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            lines.append(f"• {_slack_escape(str(name))}: {_slack_escape(shown)}")
        return "\n".join(lines)[:3000]

    def _post_now(self, text: str) -> None:
        import httpx

        response = httpx.post(self._url, json={"text": text}, timeout=self.timeout, follow_redirects=False)
        response.raise_for_status()

    def _post(self, text: str) -> None:
        """POST on a daemon thread and wait for it ``timeout`` seconds in all (httpx's own
        timeout is per connect/read, so a server trickling bytes could hold it far longer).
        Raises ``TimeoutError`` past the deadline (the thread is abandoned: it ends with its
        connection), ``RuntimeError`` when ``MAX_SLOW_POSTS`` posts are still running, or
        what httpx raised."""
        if not _slow_posts.acquire(blocking=False):
            raise RuntimeError(f"{MAX_SLOW_POSTS} Slack posts still running")
        done = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self._post_now(text)
            except BaseException as exc:  # handed to the waiting caller
                failure.append(exc)
            finally:
                _slow_posts.release()
                done.set()

        threading.Thread(target=run, name="wa-alerts-slack-post", daemon=True).start()
        if not done.wait(self.timeout):
            raise TimeoutError(f"Slack post took longer than {self.timeout} s")
        if failure:
            raise failure[0]

    def send(self, alert: Alert, occurrences: int) -> None:
        """Post the alert's text."""
        self._post(self.text(alert, occurrences))

    def send_resolved(self, kind: str, key: str) -> None:
        """Post ``:white_check_mark: resolved [environment] `kind` key``."""
        self._post(f":white_check_mark: resolved [{_slack_escape(self.environment)}] `{_slack_escape(kind)}` {_slack_escape(key)}")


def build_sinks(settings: Any) -> list[Sink]:
    """The sinks ``settings`` configure: the log always, then Sentry (``sentry_dsn``) and
    Slack (``slack_webhook_url``) when set. A sink that cannot be built (a malformed DSN) is
    left out with a warning; never raises."""
    sinks: list[Sink] = [LogSink()]
    environment = getattr(settings, "alert_environment", "production")
    dsn = _secret(getattr(settings, "sentry_dsn", None))
    if dsn:
        try:
            sinks.append(SentrySink(dsn, environment))
        except Exception as exc:  # BadDsn and friends: the other sinks still work
            digest = sha256(dsn.encode()).hexdigest()
            with _sentry_lock:
                first = digest not in _sentry_bad_dsns
                _sentry_bad_dsns.add(digest)
            log.log(logging.WARNING if first else logging.DEBUG, "Sentry alert sink disabled: %s", type(exc).__name__)
    url = _secret(getattr(settings, "slack_webhook_url", None))
    if url:
        sinks.append(SlackSink(url, environment))
    return sinks


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return raw.strip() or None


# --- in-process grouping -----------------------------------------------------------------


@dataclass
class _Open:
    first_seen: float
    last_seen: float
    last_sent: float
    occurrences: int
    resolved: bool = False


class MemoryGroups:
    """In-process grouping state (thread-safe), shared by every engine-less notifier of the
    process: same rule as ``ops_alerts``, times from ``time.monotonic()`` (seconds)."""

    def __init__(self, max_fingerprints: int = MEMORY_MAX_FINGERPRINTS) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._max = max_fingerprints

    def record(self, fingerprint: str, repeat_seconds: float) -> tuple[bool, int]:
        """Count one occurrence; returns ``(send, occurrences)``."""
        now = time.monotonic()
        with self._lock:
            entry = self._open.get(fingerprint)
            if entry is None or entry.resolved:
                self._open[fingerprint] = _Open(now, now, now, 1)
                self._open.move_to_end(fingerprint)
                while len(self._open) > self._max:
                    self._open.popitem(last=False)
                return True, 1
            entry.occurrences += 1
            entry.last_seen = now
            self._open.move_to_end(fingerprint)
            if now - entry.last_sent >= repeat_seconds:
                entry.last_sent = now
                return True, entry.occurrences
            return False, entry.occurrences

    def resolve(self, fingerprint: str) -> bool:
        """Mark an open fingerprint resolved; False when none was open."""
        with self._lock:
            entry = self._open.get(fingerprint)
            if entry is None or entry.resolved:
                return False
            entry.resolved = True
            return True

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._open.clear()


#: the process-wide in-process grouping state
PROCESS_GROUPS = MemoryGroups()

# --- background sends --------------------------------------------------------------------

_executor_lock = threading.Lock()
#: one single-thread executor per sink: a sink's messages arrive in order (an alert, its
#: "resolved", its reopening) and a slow sink never delays another
_executors: dict[str, ThreadPoolExecutor] = {}
_pending: set[Future] = set()


def _submit(lane: str, fn: Any, *args: Any) -> None:
    with _executor_lock:
        if len(_pending) >= MAX_PENDING_SENDS:
            log.warning("alert send dropped: %d sends already waiting", len(_pending))
            return
        executor = _executors.get(lane)
        if executor is None:
            executor = _executors[lane] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wa-alerts-{lane}")
        future = executor.submit(fn, *args)
        _pending.add(future)
    future.add_done_callback(_done)


def _done(future: Future) -> None:
    with _executor_lock:
        _pending.discard(future)


def drain(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for the background sends queued so far; True when all
    finished. For tests and orderly shutdown; never raises."""
    with _executor_lock:
        waiting = list(_pending)
    if not waiting:
        return True
    _, not_done = wait_futures(waiting, timeout=timeout)
    return not not_done


# --- the notifier ------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """Exception type (and HTTP status) without its message: messages may hold the URL."""
    if isinstance(exc, SentryDeliveryError):  # the loss reason (status_500, network…) holds no secret
        return f"{type(exc).__name__} {exc.reason}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in dict(details or {}).items():
        try:
            value = json.loads(json.dumps(value, default=str))
        except (TypeError, ValueError):
            value = str(value)
        if isinstance(value, str) and len(value) > _MAX_DETAIL_VALUE:
            value = value[:_MAX_DETAIL_VALUE] + "…"
        out[str(name)] = value
    return out


def _org_uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _normalized(alert: Alert) -> Alert:
    summary = " ".join(str(alert.summary).split())
    if len(summary) > _MAX_SUMMARY:
        summary = summary[:_MAX_SUMMARY] + "…"
    return replace(
        alert,
        kind=str(alert.kind)[:64],
        key=str(alert.key),
        summary=summary,
        severity=alert.severity if alert.severity in SEVERITIES else "error",
        details=_json_safe(alert.details),
        organization_id=_org_uuid(alert.organization_id),
    )


def stored_fingerprint(kind: str, key: str) -> str:
    """The ``ops_alerts.fingerprint`` of (kind, key): ``"kind:key"``, or when that is longer
    than the column's 255 characters, its first 238 characters, ``~`` and 16 hex of its SHA-256."""
    fingerprint = f"{str(kind)[:64]}:{key}"
    if len(fingerprint) <= 255:
        return fingerprint
    return fingerprint[:238] + "~" + sha256(fingerprint.encode()).hexdigest()[:16]


def _log_extra(alert: Alert, occurrences: int) -> dict[str, Any]:
    return {
        "alert_kind": alert.kind,
        "alert_key": alert.key,
        "alert_severity": alert.severity,
        "alert_occurrences": occurrences,
        "alert_details": dict(alert.details),
        "organization_id": str(alert.organization_id) if alert.organization_id else None,
    }


class Notifier:
    """Sends alerts to the configured sinks, grouping repeats.

    ``settings``: service settings (default :func:`~wa_core.settings.get_settings`);
    ``engine``: a synchronous SQLAlchemy engine on the app database for shared grouping in
    ``ops_alerts`` (None: in-process grouping); ``sinks``: override the sinks built from the
    settings; ``background``: run network sinks on a background thread (default: True
    without an engine); ``groups``: the in-process state (default :data:`PROCESS_GROUPS`).

    With an engine, ``notify``/``resolve`` do a short database transaction: call them from
    a thread, not from an event loop. Without one they never block on the network.
    """

    def __init__(
        self,
        settings: Any = None,
        engine: Any = None,
        *,
        sinks: Iterable[Sink] | None = None,
        background: bool | None = None,
        groups: MemoryGroups | None = None,
    ) -> None:
        if settings is None:
            from wa_core.settings import get_settings

            settings = get_settings()
        self.settings = settings
        self.engine = engine
        self.sinks: list[Sink] = list(sinks) if sinks is not None else build_sinks(settings)
        self.background = (engine is None) if background is None else background
        self.groups = groups if groups is not None else PROCESS_GROUPS
        self.repeat_seconds = float(getattr(settings, "alert_repeat_seconds", 3600.0))

    # -- public API --

    def notify(self, alert: Alert) -> bool:
        """Record one occurrence of ``alert`` and, unless it is grouped, send it to every sink.

        Returns True when the sinks were called (first occurrence, reopened after a resolve,
        or the open alert was last sent ``ALERT_REPEAT_SECONDS`` or more ago), False when it
        was grouped (occurrences counted, ``last_seen_at`` updated, nothing sent). Never
        raises: a grouping-store error falls back to in-process grouping, a failing sink logs
        a warning, an unexpected error logs a warning and returns False.
        """
        try:
            alert = _normalized(alert)
            send, occurrences = self._record(alert)
            if not send:
                log.debug("alert %s grouped (occurrences: %d)", alert.fingerprint, occurrences)
                return False
            for sink in self.sinks:
                self._dispatch(sink, "send", alert, occurrences)
            return True
        except Exception as exc:  # never into the caller
            log.warning("alert %s could not be handled: %s", getattr(alert, "kind", "?"), _describe(exc))
            return False

    def resolve(self, kind: str, key: str) -> bool:
        """Close the open alert ``kind:key``: sets ``resolved_at`` (UTC), logs ``ALERT resolved``
        and posts a resolved notice to Slack. Returns False when no such alert was open (then
        nothing is logged or sent). The next occurrence reopens it and is sent. Never raises."""
        try:
            fingerprint = stored_fingerprint(kind, key)
            closed = self.groups.resolve(fingerprint)
            if self.engine is not None:
                try:
                    closed = self._resolve_db(fingerprint)
                except Exception as exc:
                    log.warning("alert grouping store unavailable, resolved in process only: %s", _describe(exc))
            if not closed:
                return False
            for sink in self.sinks:
                if hasattr(sink, "send_resolved"):
                    self._dispatch(sink, "send_resolved", str(kind), str(key))
            return True
        except Exception as exc:
            log.warning("alert %s could not be resolved: %s", kind, _describe(exc))
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds for background sends (see :func:`drain`)."""
        return drain(timeout)

    # -- internals --

    def _dispatch(self, sink: Sink, method: str, *args: Any) -> None:
        if self.background and getattr(sink, "blocking", False):
            _submit(str(getattr(sink, "name", type(sink).__name__)), self._safe_call, sink, method, args)
        else:
            self._safe_call(sink, method, args)

    @staticmethod
    def _safe_call(sink: Sink, method: str, args: tuple) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as exc:  # one sink failing never stops the others
            what = args[0].fingerprint if args and isinstance(args[0], Alert) else ":".join(map(str, args))
            log.warning("alert sink %s failed for %s: %s", getattr(sink, "name", type(sink).__name__), what, _describe(exc))

    def _record(self, alert: Alert) -> tuple[bool, int]:
        fingerprint = stored_fingerprint(alert.kind, alert.key)
        if self.engine is not None:
            try:
                return self._record_db(alert, fingerprint)
            except Exception as exc:
                log.warning("alert grouping store unavailable, grouping in process: %s", _describe(exc))
        return self.groups.record(fingerprint, self.repeat_seconds)

    def _record_db(self, alert: Alert, fingerprint: str) -> tuple[bool, int]:
        from wa_core.db.engine import insert_ignore, storable
        from wa_core.db.schema import as_utc, ops_alerts, utcnow

        now = utcnow()
        content = storable(
            {
                "kind": alert.kind,
                "key": alert.key[:255],
                "severity": alert.severity,
                "summary": alert.summary,
                "details": dict(alert.details),
            }
        )
        with self.engine.begin() as conn:
            fresh = {
                "fingerprint": fingerprint,
                **content,
                "organization_id": alert.organization_id,
                "first_seen_at": now,
                "last_seen_at": now,
                "last_sent_at": now,
                "occurrences": 1,
                "resolved_at": None,
            }
            if insert_ignore(conn, ops_alerts, fresh, ["fingerprint"]):
                return True, 1
            # the row exists: lock it (Postgres; SQLite's BEGIN IMMEDIATE already serializes)
            row = conn.execute(
                sa.select(ops_alerts.c.last_sent_at, ops_alerts.c.occurrences, ops_alerts.c.resolved_at)
                .where(ops_alerts.c.fingerprint == fingerprint)
                .with_for_update()
            ).one()
            reopened = row.resolved_at is not None
            last_sent: datetime | None = as_utc(row.last_sent_at)
            send = reopened or last_sent is None or (now - last_sent).total_seconds() >= self.repeat_seconds
            occurrences = 1 if reopened else row.occurrences + 1
            values: dict[str, Any] = {**content, "last_seen_at": now, "occurrences": occurrences, "resolved_at": None}
            if alert.organization_id is not None:
                values["organization_id"] = alert.organization_id
            if reopened:
                values["first_seen_at"] = now
            if send:
                values["last_sent_at"] = now
            conn.execute(sa.update(ops_alerts).where(ops_alerts.c.fingerprint == fingerprint).values(**values))
            return send, occurrences

    def _resolve_db(self, fingerprint: str) -> bool:
        from wa_core.db.schema import ops_alerts, utcnow

        with self.engine.begin() as conn:
            closed = conn.execute(
                sa.update(ops_alerts)
                .where(ops_alerts.c.fingerprint == fingerprint, ops_alerts.c.resolved_at.is_(None))
                .values(resolved_at=utcnow())
                .returning(ops_alerts.c.fingerprint)
            ).first()
        return closed is not None


def get_notifier(settings: Any = None, engine: Any = None) -> Notifier:
    """The notifier for ``settings`` (default: the service settings) and the app ``engine``
    (a synchronous SQLAlchemy engine; None = in-process grouping, background network sends)."""
    return Notifier(settings, engine)
