"""Alert sensors: run failures and failed asset checks go to the notifier (filled by the operations work)."""

from __future__ import annotations

ALERT_SENSORS: list = []
