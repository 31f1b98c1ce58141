"""Times given by clients (API query parameters, request bodies, command-line options) made
UTC, with a clear error for one that has no UTC equivalent.

``datetime`` spans years 1 to 9999 in every offset, so ``9999-12-31T23:59:59-05:00`` or
``0001-01-01T00:00:00+05:00`` parse, yet have no UTC ``datetime`` (converting raises
``OverflowError``, and so does adding a margin to a time near the ends): those used to answer
500 (break-it #3 of the event feed). :func:`to_utc` turns them into a ``ValueError`` (a 422
through pydantic, :data:`UtcTime`), and :func:`shifted` saturates at the ends instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

from pydantic import AfterValidator

#: the earliest and latest UTC times a ``datetime`` holds
EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)


def to_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken as UTC already).

    Raises ``ValueError`` (with the value and the range) when it has no UTC equivalent."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(
            f"{value.isoformat()} is out of range once converted to UTC (between {EARLIEST.isoformat()} and {LATEST.isoformat()})"
        ) from None


def shifted(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, saturated at :data:`EARLIEST` / :data:`LATEST` instead of overflowing."""
    try:
        return at + delta
    except OverflowError:
        return EARLIEST if delta < timedelta(0) else LATEST


#: a pydantic / FastAPI type: an ISO time, made UTC; 422 for one without a UTC equivalent
UtcTime = Annotated[datetime, AfterValidator(to_utc)]

__all__ = ["EARLIEST", "LATEST", "UtcTime", "shifted", "to_utc"]
