"""The Sentry alert sink: a dedicated sentry-sdk client per (DSN, environment) and process (no
global ``init``, no integrations, so the service's own error logs are never forwarded), whose
transport records what happened to each event so a lost alert is reported, not assumed sent.

sentry-sdk is imported only when a DSN is set. An invalid ``SENTRY_DSN`` is logged once per
process and DSN (:func:`report_bad_dsn`). Limitation: a DSN whose server accepts the envelope
(2xx) and later drops it cannot be detected from here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from wa_core.alerts.sinks import SEND_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from wa_core.alerts.notifier import Alert

log = logging.getLogger("wa_core.alerts")

_SENTRY_LEVELS = {"info": "info", "warning": "warning", "error": "error", "critical": "fatal"}

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




def report_bad_dsn(dsn: str, exc: BaseException) -> None:
    """Log that the Sentry sink is left out because ``dsn`` could not be used: a warning naming
    the exception type (never the DSN) the first time per process and DSN, DEBUG after."""
    digest = sha256(dsn.encode()).hexdigest()
    with _sentry_lock:
        first = digest not in _sentry_bad_dsns
        _sentry_bad_dsns.add(digest)
    log.log(logging.WARNING if first else logging.DEBUG, "Sentry alert sink disabled: %s", type(exc).__name__)
