"""Break-it #2 of the event feed: two transactions creating overlapping new contacts at once
announce each contact's creation exactly once (the one whose insert made it)."""

from __future__ import annotations


import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import bind_fixture_numbers, once_it_waits
from wa_core.db.schema import utcnow, whatsapp_contacts
from wa_core.db.schema_events import whatsapp_events
from wa_core.events.outbox import flush_events
from wa_core.processing.contacts import resolve_contacts
from wa_core.processing.records import ContactRef


def test_two_racing_batches_announce_each_created_contact_once(engine: Engine) -> None:
    org = bind_fixture_numbers(engine)["acme"]
    seen = utcnow().replace(microsecond=0)
    x, y = (ContactRef(org, wa_id, None, seen, profile_name=name) for wa_id, name in (("15550000771", "X"), ("15550000772", "Y")))
    first = engine.connect()
    first.begin()
    resolve_contacts(first, [y])  # creates y, not committed yet

    def second(conn):
        ids = resolve_contacts(conn, [x, y])  # creates x, then waits on y
        flush_events(conn)
        return ids

    try:
        done = once_it_waits(engine, second, lambda: (flush_events(first), first.commit()))
    finally:
        first.close()
    done["ids"] = done["result"]
    with engine.connect() as conn:
        contacts = {r.wa_id: r.id for r in conn.execute(sa.select(whatsapp_contacts))}
        events = conn.execute(sa.select(whatsapp_events).where(whatsapp_events.c.type == "contact.updated")).all()
    assert done["ids"] == [contacts["15550000771"], contacts["15550000772"]]
    created = sorted((e.payload["wa_id"], e.payload["contact_id"]) for e in events if e.payload["created"])
    assert created == [("15550000771", str(contacts["15550000771"])), ("15550000772", str(contacts["15550000772"]))]
    assert len(events) == 2  # nothing changed after the creations: no second event
