"""Alerts: one notifier with log, Sentry and Slack sinks, grouped in ``ops_alerts``.

Import the public names from here: ``from wa_core.alerts import Alert, Notifier, get_notifier``.
One module per concern:

* :mod:`wa_core.alerts.notifier`: :class:`Alert`, :class:`Notifier`, :func:`get_notifier`,
  :func:`build_sinks` (which sinks the settings configure) and the background sends
  (:func:`drain`);
* :mod:`wa_core.alerts.sinks`: the :class:`Sink` protocol, :class:`LogSink`, :class:`SlackSink`;
* :mod:`wa_core.alerts.sentry`: :class:`SentrySink` and its delivery-checking transport;
* :mod:`wa_core.alerts.store`: grouping, in ``ops_alerts`` (shared by every process) or in
  process (:data:`PROCESS_GROUPS`), and :func:`stored_fingerprint`.

Every module logs on the ``wa_core.alerts`` logger.
"""

from wa_core.alerts.notifier import ALERT_KINDS, SEVERITIES, Alert, Notifier, build_sinks, drain, get_notifier
from wa_core.alerts.sentry import SentryDeliveryError, SentrySink
from wa_core.alerts.sinks import LogSink, Sink, SlackSink
from wa_core.alerts.store import PROCESS_GROUPS, MemoryGroups, stored_fingerprint

__all__ = [
    "ALERT_KINDS",
    "PROCESS_GROUPS",
    "SEVERITIES",
    "Alert",
    "LogSink",
    "MemoryGroups",
    "Notifier",
    "SentryDeliveryError",
    "SentrySink",
    "Sink",
    "SlackSink",
    "build_sinks",
    "drain",
    "get_notifier",
    "stored_fingerprint",
]
