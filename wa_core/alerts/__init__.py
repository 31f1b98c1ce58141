"""Alerts: one notifier with log, Sentry and Slack sinks, grouped in ``ops_alerts``.

Import the public names from here: ``from wa_core.alerts import Alert, Notifier, get_notifier``.
"""

from wa_core.alerts.notifier import Alert, Notifier, get_notifier

__all__ = ["Alert", "Notifier", "get_notifier"]
