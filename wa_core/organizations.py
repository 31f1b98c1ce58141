"""Organizations as operators name them: by id (UUID) or by external id (the SaaS's own id).

The one resolver of such a reference (:func:`resolve_organization`), used by the admin API,
the dead-letter replay and purge filters and the ``assign_waba`` decision, and the lookup
the dashboards use to show a lane by name (:func:`organizations_by_id`).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from wa_core.db.schema import organizations

#: longest organization reference accepted (``organizations.external_id`` is 255)
MAX_ORG_REF = 255


class UnknownOrganization(LookupError):
    """No organization has this id or external id (the admin API answers 404)."""


class InvalidOrganization(ValueError):
    """The reference cannot be an id or an external id (the admin API answers 422)."""


class OrganizationRef(BaseModel):
    """An organization: its id, external id and name."""

    id: uuid.UUID
    external_id: str = Field(description="the SaaS's own organization id")
    name: str


def resolve_organization(conn: Connection, ref: str | uuid.UUID) -> OrganizationRef:
    """The organization whose id (UUID) or external id is ``ref`` (surrounding spaces ignored).

    An id match wins over an external-id match (an external id may look like a UUID).
    Raises :class:`InvalidOrganization` for an empty, over-long (> 255) or control-character
    reference and :class:`UnknownOrganization` when no organization matches.
    """
    ref = str(ref).strip()
    if not ref or len(ref) > MAX_ORG_REF or any(ord(ch) < 32 or ord(ch) == 127 for ch in ref):
        raise InvalidOrganization("organization must be an organization id or external id (1-255 printable characters)")
    o = organizations.c
    conditions: list[Any] = [o.external_id == ref]
    as_id: uuid.UUID | None = None
    try:
        as_id = uuid.UUID(ref)
        conditions.append(o.id == as_id)
    except ValueError:
        pass
    found = conn.execute(sa.select(o.id, o.external_id, o.name).where(sa.or_(*conditions))).all()
    if not found:
        raise UnknownOrganization(f"no organization with id or external id {ref!r}")
    best = next((r for r in found if r.id == as_id), found[0])
    return OrganizationRef(id=best.id, external_id=best.external_id, name=best.name)


def organizations_by_id(conn: Connection) -> dict[uuid.UUID, OrganizationRef]:
    """Every organization by id."""
    o = organizations.c
    return {r.id: OrganizationRef(id=r.id, external_id=r.external_id, name=r.name) for r in conn.execute(sa.select(o.id, o.external_id, o.name))}
