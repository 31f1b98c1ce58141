"""Operator alerts: one small notifier with pluggable sinks (log always, Sentry, Slack).

Contract (used by asset checks, sensors, processing and the receiver):

* :class:`Alert` ``(kind, key, summary, severity='error', details={}, organization_id=None)``;
  its ``fingerprint`` is ``"kind:key"``.
* :class:`Notifier` ``.notify(alert) -> bool``: True when the sinks were called, False when the
  alert was grouped with an open one of the same fingerprint sent less than
  ``ALERT_REPEAT_SECONDS`` ago. ``.resolve(kind, key) -> bool`` closes an open alert.
* :func:`get_notifier(settings, engine)`.

This first version only logs; grouping and the Sentry/Slack sinks come with the operations work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("wa_webhook.alerts")

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


class Notifier:
    """Sends alerts to the configured sinks (log only in this first version)."""

    def __init__(self, settings=None, engine=None) -> None:
        self.settings = settings
        self.engine = engine

    def notify(self, alert: Alert) -> bool:
        """Log the alert; returns True."""
        log.error("ALERT %s [%s] %s", alert.fingerprint, alert.severity, alert.summary)
        return True

    def resolve(self, kind: str, key: str) -> bool:
        """Close an open alert (no-op in this first version)."""
        return False


def get_notifier(settings=None, engine=None) -> Notifier:
    """The notifier for ``settings`` (default: the service settings) and the app ``engine``."""
    return Notifier(settings, engine)
