"""A straightforward set-based writer: the yardstick the processing engine is measured against.

It does the same inserts into the same tables as the engine for ``messages`` webhooks
(contacts, messages, statuses, reactions, the messages' current status, the rows marked
processed) the way one would write it directly: claim up to ``batch`` pending rows with
``FOR UPDATE SKIP LOCKED``, parse the bodies, then one multi-row ``INSERT … SELECT FROM
unnest(…)`` per table through psycopg, one ``UPDATE`` of the rows, one transaction per batch.
No per-item outcome bookkeeping, no validation beyond what the happy path needs, no
isolation of a bad item, no edits/revokes, coexistence fields or ``account_update``: it
exists to measure what the tables cost, not to be used. Bench code only.

    .venv/bin/python bench/reference_writer.py postgresql://…/db [batch]   # drains, prints JSON
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg

RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}
CLAIM = """
UPDATE whatsapp_webhook_logs SET locked_until = now() + interval '5 minutes', claimed_at = now(), attempts = attempts + 1
WHERE id IN (SELECT id FROM whatsapp_webhook_logs WHERE status = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id, body, received_at
"""
CONTACTS = """
INSERT INTO whatsapp_contacts (id, organization_id, wa_id, profile_name, first_seen_at, last_seen_at, created_at, updated_at)
SELECT v.id, v.org, v.wa_id, v.name, v.seen, v.seen, v.seen, v.seen
FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::timestamptz[]) AS v(id, org, wa_id, name, seen)
ON CONFLICT (organization_id, wa_id) DO UPDATE SET profile_name = coalesce(excluded.profile_name, whatsapp_contacts.profile_name),
  last_seen_at = greatest(whatsapp_contacts.last_seen_at, excluded.last_seen_at)
RETURNING id, organization_id, wa_id
"""
MESSAGES = """
INSERT INTO whatsapp_messages (organization_id, phone_number_id, wamid, contact_id, direction, source, type, body, context_wamid,
  raw, status_rank, provider_timestamp, received_at, webhook_log_id, created_at)
SELECT v.org, v.phone, v.wamid, v.contact, 'inbound', 'cloud_api', v.type, v.body, v.ctx, v.raw::jsonb, 0, v.ts, v.received, v.log, now()
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
  %s::timestamptz[], %s::bigint[]) AS v(org, phone, wamid, contact, type, body, ctx, raw, ts, received, log)
ON CONFLICT (phone_number_id, wamid) DO NOTHING
"""
STATUSES = """
INSERT INTO whatsapp_message_statuses (organization_id, phone_number_id, wamid, status, recipient_id, pricing, raw,
  provider_timestamp, received_at, webhook_log_id)
SELECT v.org, v.phone, v.wamid, v.status, v.recipient, v.pricing::jsonb, v.raw::jsonb, v.ts, v.received, v.log
FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
  %s::timestamptz[], %s::bigint[]) AS v(org, phone, wamid, status, recipient, pricing, raw, ts, received, log)
ON CONFLICT (phone_number_id, wamid, status) DO NOTHING
"""
REACTIONS = """
INSERT INTO whatsapp_message_reactions (organization_id, phone_number_id, target_wamid, reactor, emoji, reaction_wamid,
  provider_timestamp, updated_at)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
ON CONFLICT (phone_number_id, target_wamid, reactor) DO UPDATE SET emoji = excluded.emoji, reaction_wamid = excluded.reaction_wamid,
  provider_timestamp = excluded.provider_timestamp, updated_at = excluded.updated_at
"""
CURRENT_STATUS = """
UPDATE whatsapp_messages m SET current_status = v.status, status_rank = v.rank
FROM unnest(%s::text[], %s::text[], %s::text[], %s::smallint[]) AS v(phone, wamid, status, rank)
WHERE m.phone_number_id = v.phone AND m.wamid = v.wamid AND m.status_rank < v.rank
"""
DONE = """
UPDATE whatsapp_webhook_logs SET status = 'processed', processed_at = now(), updated_at = now(), locked_until = NULL,
  items_received = v.n, items_processed = v.n, items_ignored = 0, items_failed = 0, items_dead = 0, fields = 'messages'
FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE whatsapp_webhook_logs.id = v.id
"""


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    except (TypeError, ValueError):
        return None


def _body(message: dict[str, Any]) -> str | None:
    kind = message.get("type")
    content = message.get(kind) if isinstance(message.get(kind), dict) else {}
    return content.get("body") or content.get("caption") or content.get("name") or content.get("emoji") or None


def apply_batch(conn: psycopg.Connection, batch: int, timings: dict[str, float] | None = None) -> tuple[int, int]:
    """Claim and write one batch; returns (webhooks, items). ``timings["claim"]`` adds up the
    claim's seconds."""
    started = time.perf_counter()
    claimed = conn.execute(CLAIM, (batch,)).fetchall()
    if timings is not None:
        timings["claim"] = timings.get("claim", 0.0) + time.perf_counter() - started
    if not claimed:
        conn.commit()
        return 0, 0
    routes = dict(conn.execute("SELECT phone_number_id, organization_id FROM whatsapp_configs").fetchall())
    contacts: dict[tuple, list] = {}
    messages, statuses, reactions, ranks, done = [], [], {}, {}, []
    for log_id, body, received in claimed:
        items = 0
        for entry in json.loads(body)["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                phone = value["metadata"]["phone_number_id"]
                org = routes[phone]
                names = {c["wa_id"]: c.get("profile", {}).get("name") for c in value.get("contacts", [])}
                for m in value.get("messages", []):
                    items += 1
                    contacts.setdefault((org, m["from"]), [uuid.uuid4(), org, m["from"], names.get(m["from"]), received])
                    ctx = (m.get("context") or {}).get("id") or (m.get("reaction") or {}).get("message_id")
                    messages.append((org, phone, m["id"], (org, m["from"]), m["type"], _body(m), ctx, json.dumps(m), _ts(m.get("timestamp")), received, log_id))
                    if m["type"] == "reaction":
                        r = m["reaction"]
                        reactions[(phone, r["message_id"], m["from"])] = (org, phone, r["message_id"], m["from"], r.get("emoji") or None, m["id"], _ts(m.get("timestamp")), received)
                for s in value.get("statuses", []):
                    items += 1
                    statuses.append((org, phone, s["id"], s["status"], s.get("recipient_id"), json.dumps(s["pricing"]) if s.get("pricing") else None,
                                     json.dumps(s), _ts(s.get("timestamp")), received, log_id))
                    if RANK.get(s["status"], 0) > ranks.get((phone, s["id"]), ("", 0))[1]:
                        ranks[(phone, s["id"])] = (s["status"], RANK[s["status"]])
        done.append((log_id, items))
    ids = {}
    if contacts:
        rows = sorted(contacts.values(), key=lambda c: c[2])
        for contact_id, org, wa_id in conn.execute(CONTACTS, [list(col) for col in zip(*rows)]).fetchall():
            ids[(org, wa_id)] = contact_id
    if messages:
        rows = sorted({(m[1], m[2]): m for m in reversed(messages)}.values(), key=lambda m: (m[1], m[2]))
        rows = [(*m[:3], ids[m[3]], *m[4:]) for m in rows]
        conn.execute(MESSAGES, [list(col) for col in zip(*rows)])
    if statuses:
        rows = sorted({(s[1], s[2], s[3]): s for s in reversed(statuses)}.values(), key=lambda s: (s[1], s[2], s[3]))
        conn.execute(STATUSES, [list(col) for col in zip(*rows)])
    if reactions:
        conn.execute(REACTIONS, [list(col) for col in zip(*sorted(reactions.values(), key=lambda r: r[1:4]))])
    if ranks:
        rows = sorted((phone, wamid, status, rank) for (phone, wamid), (status, rank) in ranks.items())
        conn.execute(CURRENT_STATUS, [list(col) for col in zip(*rows)])
    conn.execute(DONE, [list(col) for col in zip(*done)])
    conn.commit()
    return len(claimed), sum(n for _, n in done)


def drain(dsn: str, batch: int = 1000) -> dict[str, Any]:
    """Apply every pending row; returns webhooks, items, seconds, this process's CPU seconds and
    the seconds spent claiming."""
    webhooks = items = 0
    timings: dict[str, float] = {}
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit TO OFF")  # as the engine's processing sessions
        conn.commit()
        started, cpu0 = time.perf_counter(), time.process_time()
        while True:
            w, i = apply_batch(conn, batch, timings)
            if not w:
                break
            webhooks, items = webhooks + w, items + i
    return {"webhooks": webhooks, "items": items, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu0,
            "claim_seconds": timings.get("claim", 0.0)}


if __name__ == "__main__":
    print(json.dumps(drain(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1000)))
