"""Meta timestamps → aware UTC datetimes."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def meta_time(value: Any) -> datetime | None:
    """Parse a Meta Unix-seconds timestamp (string in ``value`` objects, int in ``entry.time``).

    Returns an aware UTC datetime, or None for a missing or unparseable value (never raises).
    Source: Meta webhooks reference, "messages" and "account_update" (timestamps are Unix
    seconds; strings inside ``value``, integers for ``entry.time``).
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float's range
        return None
    if not (0 <= seconds < 32503680000):  # before year 3000
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
