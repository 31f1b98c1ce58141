"""What the dashboards share: the 24 h window, how a lane is shown, grouped counts, Markdown.

Every per-organization row of a dashboard carries ``organization_id`` (UUID string, or None
for the unrouted lane), ``organization_external_id`` and ``organization`` (its name, or
:data:`~wa_core.backlog.UNROUTED_LANE`, see :func:`~wa_core.backlog.lane_label`). A webhook
row's organization is its lane (:func:`~wa_core.backlog.lane_expression`), so a row whose
WABA was bound after it landed counts under that organization in every dashboard.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.backlog import lane_label
from wa_core.organizations import OrganizationRef

#: the 24 h window of the "…_24h" figures
WINDOW = timedelta(hours=24)


def lane_columns(orgs: dict[uuid.UUID, OrganizationRef], lane: uuid.UUID | None) -> dict[str, Any]:
    """``{"organization_id", "organization_external_id", "organization"}`` of a lane as the
    dashboards show it (``orgs``: :func:`~wa_core.organizations.organizations_by_id`); an
    organization deleted meanwhile shows as its id."""
    org = orgs.get(lane) if lane is not None else None
    return {
        "organization_id": str(lane) if lane is not None else None,
        "organization_external_id": org.external_id if org else None,
        "organization": lane_label(lane, org.name if org else None),
    }


def grouped(conn: Connection, stmt: sa.Select) -> dict[Any, int]:
    """{key or (keys…): count} of a ``SELECT keys…, count`` statement."""
    out: dict[Any, int] = {}
    for row in conn.execute(stmt):
        *keys, n = row
        out[keys[0] if len(keys) == 1 else tuple(keys)] = int(n or 0)
    return out


def _escape(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def markdown(headers: list[str], rows: Iterable[Iterable[Any]], numeric_from: int = 1) -> str:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i < numeric_from else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(_escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
