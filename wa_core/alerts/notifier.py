"""Operator alerts: one small notifier with pluggable sinks (log always, Sentry, Slack).

Contract (used by asset checks, sensors, processing and the receiver):

* :class:`Alert` ``(kind, key, summary, severity='error', details={}, organization_id=None)``;
  its ``fingerprint`` is ``"kind:key"``.
* :class:`Notifier` ``.notify(alert) -> bool``: True when the sinks were called, False when the
  alert was grouped with an open one of the same fingerprint sent less than
  ``ALERT_REPEAT_SECONDS`` ago. ``.resolve(kind, key) -> bool`` closes an open alert.
* :func:`get_notifier(settings, engine)`.

Sinks (:mod:`wa_core.alerts.sinks`, :mod:`wa_core.alerts.sentry`): the log always (one
``ALERT …`` line, level by severity); Sentry when ``SENTRY_DSN`` is set (a dedicated
sentry-sdk client: no global ``init``, no integrations, so the service's own error logs are
never forwarded and the alert's ``[kind, key]`` fingerprint groups the issue in Sentry too);
a Slack incoming webhook when ``SLACK_WEBHOOK_URL`` is set. A sink that fails logs a warning
(the exception type, never the URL) and the others still run; nothing ever raises into the
caller. An invalid ``SENTRY_DSN`` is logged once per process and DSN. Sentry delivery is
checked per event: when its event failed or was not delivered within ``SEND_TIMEOUT_SECONDS``
the notifier logs ``alert sink sentry failed``.

Grouping (:mod:`wa_core.alerts.store`): with an ``engine`` the state lives in ``ops_alerts``
(one row per fingerprint), so every process (sensors, runs, checks) shares it; without one
(the receiver's request path) it lives in a process-wide dict with the same rule.
``resolve`` also posts a short "resolved" notice to Slack (Sentry has its own resolve
workflow).

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
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from typing import Any

from wa_core.alerts.sentry import SentryDeliveryError, SentrySink, report_bad_dsn
from wa_core.alerts.sinks import LogSink, Sink, SlackSink
from wa_core.alerts.store import PROCESS_GROUPS, MemoryGroups, record_db, resolve_db, stored_fingerprint
from wa_core.db.schema import ALERT_SEVERITIES

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
    "new_webhook_field",
    "history_sync_stalled",
    # the WABA-family state fields (wa_core.processing.handlers: templates, number_health, account_health, security)
    "template_status",
    "template_quality",
    "number_quality",
    "name_rejected",
    "account_alert",
    "account_review",
    "pin_security",
)
#: accepted severities (the ``ops_alerts`` check constraint); anything else is sent as "error"
SEVERITIES = ALERT_SEVERITIES
#: background sends waiting at most; beyond, a network send is dropped with a warning
MAX_PENDING_SENDS = 100

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
            report_bad_dsn(dsn, exc)
    url = _secret(getattr(settings, "slack_webhook_url", None))
    if url:
        sinks.append(SlackSink(url, environment))
    return sinks


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return raw.strip() or None


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
                    closed = resolve_db(self.engine, fingerprint)
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
                return record_db(self.engine, alert, fingerprint, self.repeat_seconds)
            except Exception as exc:
                log.warning("alert grouping store unavailable, grouping in process: %s", _describe(exc))
        return self.groups.record(fingerprint, self.repeat_seconds)


def get_notifier(settings: Any = None, engine: Any = None) -> Notifier:
    """The notifier for ``settings`` (default: the service settings) and the app ``engine``
    (a synchronous SQLAlchemy engine; None = in-process grouping, background network sends)."""
    return Notifier(settings, engine)
