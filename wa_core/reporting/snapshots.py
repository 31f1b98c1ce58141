"""Dashboard snapshots: the latest payload of each dashboard asset, kept in ``dashboard_snapshots``.

Every dashboard asset upserts its payload here when it materialises, so that readers outside
Dagster (the admin API) get the same figures the Dagster UI shows without recomputing them.

Payload contract (one JSON document per asset key)::

    {"computed_at": "2026-01-20T10:15:00+00:00",   # UTC, ISO 8601
     "totals": {...},                               # the dashboard's totals (numbers, small dicts)
     "rows": [...]}                                 # its rows; per-organization rows carry
                                                    # "organization_id" (UUID string or null)
                                                    # and "organization_external_id"

Datetimes are ISO 8601 strings (UTC), UUIDs strings. It lives in ``wa_webhook`` because both
halves use it: the dashboard assets write with :func:`save_snapshot`, the admin API reads with
:func:`load_snapshot` (importing ``wa_pipelines`` would load every Dagster definition into the
receiver). Works on SQLite and Postgres.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.engine import upsert
from wa_core.db.schema import as_utc, dashboard_snapshots, utcnow


def jsonable(value: Any) -> Any:
    """``value`` made JSON-serialisable, recursively.

    Dataclasses become dicts, datetimes ISO 8601 strings (naive ones are taken as UTC), dates
    ISO strings, UUIDs strings, tuples and sets lists, non-finite floats None. Other values
    are returned unchanged (``json.dumps`` raises ``TypeError`` for what it cannot encode).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def make_payload(computed_at: datetime, totals: Mapping[str, Any], rows: list[Any]) -> dict[str, Any]:
    """The snapshot payload ``{"computed_at": iso, "totals": {...}, "rows": [...]}``, JSON-ready."""
    return {"computed_at": jsonable(computed_at), "totals": jsonable(totals), "rows": jsonable(rows)}


@dataclasses.dataclass(frozen=True)
class Dashboard:
    """What a ``compute_*`` function returns: when (``computed_at``, UTC), the ``totals``
    (name → number, None, or a small dict of counts) and the ``rows`` (dataclasses)."""

    computed_at: datetime
    totals: dict[str, Any]
    rows: list[Any]

    def payload(self) -> dict[str, Any]:
        """The JSON-ready snapshot payload (see the module docstring)."""
        return make_payload(self.computed_at, self.totals, self.rows)


def save_snapshot(conn: Connection, asset_key: str, payload: Mapping[str, Any], run_id: str | None) -> None:
    """Insert or replace the snapshot of ``asset_key`` (one row per asset key).

    ``payload`` follows the contract above; its ``computed_at`` (ISO string or datetime) also
    fills the ``computed_at`` column (default: now, UTC). ``run_id`` is the Dagster run that
    computed it (None outside Dagster). The caller commits. Raises ``TypeError`` when the
    payload is not JSON-serialisable after :func:`jsonable`, SQLAlchemy errors on database
    failures.
    """
    document = jsonable(payload)
    computed_at = document.get("computed_at")
    when = datetime.fromisoformat(computed_at) if isinstance(computed_at, str) else utcnow()
    values = {"asset_key": asset_key, "computed_at": when, "run_id": run_id, "payload": document}
    upsert(
        conn,
        dashboard_snapshots,
        values,
        ["asset_key"],
        {"computed_at": when, "run_id": run_id, "payload": document},
    )


def load_snapshot(conn: Connection, asset_key: str) -> dict[str, Any] | None:
    """The stored snapshot of ``asset_key`` as ``{"asset_key", "computed_at" (aware UTC datetime),
    "run_id", "payload"}``, or None when the asset never materialised."""
    row = conn.execute(sa.select(dashboard_snapshots).where(dashboard_snapshots.c.asset_key == asset_key)).first()
    if row is None:
        return None
    return {"asset_key": row.asset_key, "computed_at": as_utc(row.computed_at), "run_id": row.run_id, "payload": row.payload}
