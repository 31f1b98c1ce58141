"""Operator-level bindings: organizations, and which WABA and phone numbers belong to them.

Onboarding binds a WABA to an organization when Embedded Signup finishes; until that flow
exists, and for repairs, an operator binds one with ``wa-onboarding bind-waba``. Everything
here is idempotent: binding the same WABA again updates the rows in place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.engine import insert_ignore
from wa_core.db.schema import organizations, utcnow, whatsapp_configs, whatsapp_connections


class BindingConflict(Exception):
    """The WABA or phone number already belongs to another organization."""


@dataclass(frozen=True)
class PhoneNumber:
    """A business phone number of a WABA (``phone_number_id`` is Meta's id, not the number)."""

    phone_number_id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    is_coexistence: bool = False


def ensure_organization(conn: Connection, external_id: str, name: str | None = None) -> uuid.UUID:
    """Return the id of the organization with ``external_id``, creating it if needed."""
    row = conn.execute(sa.select(organizations.c.id).where(organizations.c.external_id == external_id)).first()
    if row is not None:
        return row.id
    now = utcnow()
    values = {"id": uuid.uuid4(), "external_id": external_id, "name": name or external_id, "created_at": now, "updated_at": now}
    insert_ignore(conn, organizations, values, ["external_id"])  # two first calls at once: one row
    return conn.execute(sa.select(organizations.c.id).where(organizations.c.external_id == external_id)).scalar_one()


def bind_waba(
    conn: Connection,
    organization_id: uuid.UUID,
    waba_id: str,
    phone_numbers: list[PhoneNumber] = (),
    *,
    owner_business_id: str | None = None,
    status: str = "awaiting_confirmation",
) -> uuid.UUID:
    """Bind ``waba_id`` (and its phone numbers) to an organization; returns the connection id.

    A WABA already bound to the same organization is updated in place (a reconnection reuses
    its row). Raises :class:`BindingConflict` if the WABA or a number belongs to another
    organization.
    """
    now = utcnow()
    row = conn.execute(sa.select(whatsapp_connections).where(whatsapp_connections.c.waba_id == waba_id)).first()
    if row is not None and row.organization_id != organization_id:
        raise BindingConflict(f"WABA {waba_id} is bound to another organization")
    if row is None:
        connection_id = uuid.uuid4()
        conn.execute(
            sa.insert(whatsapp_connections).values(
                id=connection_id,
                organization_id=organization_id,
                waba_id=waba_id,
                owner_business_id=owner_business_id,
                status=status,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        connection_id = row.id
        values = {"updated_at": now}
        if owner_business_id:
            values["owner_business_id"] = owner_business_id
        conn.execute(sa.update(whatsapp_connections).where(whatsapp_connections.c.id == connection_id).values(**values))
    for number in phone_numbers:
        existing = conn.execute(
            sa.select(whatsapp_configs).where(whatsapp_configs.c.phone_number_id == number.phone_number_id)
        ).first()
        values = {
            "organization_id": organization_id,
            "connection_id": connection_id,
            "waba_id": waba_id,
            "display_phone_number": number.display_phone_number,
            "verified_name": number.verified_name,
            "is_coexistence": number.is_coexistence,
            "updated_at": now,
        }
        if existing is None:
            config_status = "connected" if status == "active" else "pending"
            conn.execute(
                sa.insert(whatsapp_configs).values(
                    id=uuid.uuid4(), phone_number_id=number.phone_number_id, status=config_status, created_at=now, **values
                )
            )
        elif existing.organization_id != organization_id:
            raise BindingConflict(f"phone_number_id {number.phone_number_id} is bound to another organization")
        else:
            conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.id == existing.id).values(**values))
    return connection_id
