"""Where a sent alert goes: the :class:`Sink` protocol, the log sink (always on) and the Slack
incoming-webhook sink. The Sentry sink is in :mod:`wa_core.alerts.sentry`; which sinks a
configuration gets is :func:`wa_core.alerts.notifier.build_sinks`.

A sink may raise: the notifier catches, logs a warning (the exception type, never the URL)
and carries on with the other sinks. Network sends are bounded in total time
(``SEND_TIMEOUT_SECONDS``), not only per read: the Slack post runs on a short-lived daemon
thread the caller waits for at most that long (a server trickling its answer keeps only that
thread, never the caller; at most ``MAX_SLOW_POSTS`` such threads at once).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from wa_core.alerts.notifier import Alert

log = logging.getLogger("wa_core.alerts")

#: seconds a network sink may take (connect + send); Sentry's flush waits at most this long
SEND_TIMEOUT_SECONDS = 5.0
#: Slack posts still running past their deadline at most; beyond, a post fails at once
MAX_SLOW_POSTS = 4

_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
_SLACK_ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:", "critical": ":fire:"}


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



def _log_extra(alert: Alert, occurrences: int) -> dict[str, Any]:
    return {
        "alert_kind": alert.kind,
        "alert_key": alert.key,
        "alert_severity": alert.severity,
        "alert_occurrences": occurrences,
        "alert_details": dict(alert.details),
        "organization_id": str(alert.organization_id) if alert.organization_id else None,
    }



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
