"""Per-organization fairness in processing: routing hints, quotas, visible backlog.

Issue #5: each organization gets at most ``PROCESSING_ORG_MAX_IN_FLIGHT`` rows leased at once
and ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE`` claims per rolling minute, so a flood from one
organization is worked off steadily while the others keep flowing; nothing is refused.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import FIXTURES, fixture_bytes
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA, bind_fixture_numbers, land, rows
from wa_core.backlog import backlog_by_organization
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import utcnow, whatsapp_messages, whatsapp_webhook_logs
from wa_core.routing import routing_waba_id
from wa_core.settings import Settings
from wa_core.processing.claim import claim_batch
from wa_core.processing.runner import process_batch, run_processing

UNKNOWN_WABA, UNKNOWN_PHONE = "100000000000999", "200000000000999"

_seq = iter(range(1, 10**9))


def text_body(waba_id: str, phone_number_id: str) -> bytes:
    """A realistic one-message webhook with a unique wamid (as Meta sends it, compact JSON)."""
    n = next(_seq)
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
                                "contacts": [{"profile": {"name": "Flood"}, "wa_id": "15550009999"}],
                                "messages": [
                                    {
                                        "from": "15550009999",
                                        "id": f"wamid.FAIR{n:020d}",
                                        "timestamp": "1767225600",
                                        "type": "text",
                                        "text": {"body": "hi"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


def quota(settings: Settings, per_minute: int = 100, in_flight: int = 10) -> Settings:
    return settings.model_copy(
        update={"processing_org_webhooks_per_minute": per_minute, "processing_org_max_in_flight": in_flight}
    )


def lanes(engine: Engine) -> dict:
    with engine.connect() as conn:
        return {b.organization_external_id or "unrouted": b for b in backlog_by_organization(conn)}


# --- routing hint -------------------------------------------------------------------------
def test_routing_hint_is_the_envelope_waba_id_for_every_fixture() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name in {"signatures.json", "expected.json"}:
            continue
        body = path.read_bytes()
        assert routing_waba_id(body) == json.loads(body)["entry"][0]["id"], path.name


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"entry":[{"changes":[],"id":"123"}],"object":"whatsapp_business_account"}', "123"),  # other key order
        (b'{ "object" : "x", "entry" : [ { "id" : "42", "changes": [] } ] }', "42"),  # pretty-printed
        (fixture_bytes("not_json.txt"), None),
        (b'{"entry":[{"id":"\\u0661\\u0662"}]}', None),  # Arabic-Indic digits are not an id
        (b'{"entry":[{"id":12345}]}', None),  # not a string
        (b'{"entry":[]}', None),
        (b"[1,2,3]", None),
        (b'[{"entry":[{"id":"5"}]}]', None),  # a list is not the envelope
        (b'{"object":{"entry":[{"id":"88"}]},"entry":[{"id":"9"}]}', "9"),  # a nested entry is not the envelope's
        (b'{"object":"whatsapp_business_account","x":{"entry":[{"id":"77"}]},"entry":[{"id":"6"}]}', "6"),
        (b'{"entry":[{"changes":[' + b'{"field":"x"},' * 10_000 + b'{}],"id":"7"}]}', None),  # id past 64 KiB: unrouted
    ],
)
def test_routing_hint_never_raises_and_rejects_what_is_not_an_id(body: bytes, expected: str | None) -> None:
    assert routing_waba_id(body) == expected


# --- quotas -------------------------------------------------------------------------------
def test_flood_from_one_organization_does_not_delay_the_others(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    for _ in range(150):
        land(engine, text_body(ACME_WABA, ACME_PHONE))
    globex_ids = [land(engine, text_body(GLOBEX_WABA, GLOBEX_PHONE)) for _ in range(3)]

    first = claim_batch(engine, 200, 60, org_max_in_flight=10, org_per_minute=100)
    by_waba = {waba: sum(1 for r in first if routing_waba_id(r.body) == waba) for waba in (ACME_WABA, GLOBEX_WABA)}
    assert by_waba == {ACME_WABA: 10, GLOBEX_WABA: 3}  # Globex's 3 came in with Acme's first 10
    assert first.held_back > 0

    # Acme is at its in-flight limit: a second claim before the first finishes gets nothing of Acme
    again = claim_batch(engine, 200, 60, org_max_in_flight=10, org_per_minute=100)
    assert list(again) == [] and again.held_back > 0
    backlog = lanes(engine)
    assert backlog["acme"].in_flight == 10 and backlog["acme"].claimable == 140
    assert backlog["acme"].organization_id == orgs["acme"]
    assert backlog["globex"].in_flight == 3 and backlog["globex"].claimable == 0
    assert {r.id for r in first} >= set(globex_ids)


def test_a_run_works_off_a_flood_at_the_per_minute_quota_while_new_webhooks_of_others_flow(
    engine: Engine, settings: Settings
) -> None:
    bind_fixture_numbers(engine)
    settings = quota(settings, per_minute=100, in_flight=10)
    for _ in range(130):
        land(engine, text_body(ACME_WABA, ACME_PHONE))

    late: list[int] = []

    def globex_arrives_later() -> None:
        time.sleep(0.8)
        late.extend(land(engine, text_body(GLOBEX_WABA, GLOBEX_PHONE)) for _ in range(5))

    t = threading.Thread(target=globex_arrives_later)
    t.start()
    stats = run_processing(engine, settings, idle_exit_seconds=0, max_seconds=3.0, poll_seconds=0.05)
    t.join()

    logs = {r.id: r for r in rows(engine, whatsapp_webhook_logs)}
    acme_done = sum(1 for r in logs.values() if r.waba_id == ACME_WABA and r.status == "processed")
    assert acme_done == 100  # the quota, not the 130 waiting
    assert all(logs[i].status == "processed" for i in late)  # Globex was not stuck behind the flood
    assert stats.throttled_claims > 0 and stats.seconds >= 2.5  # held back is work: the run waited
    backlog = lanes(engine)
    assert backlog["acme"].claimable == 30 and backlog["acme"].claimed_last_minute == 100
    assert "globex" not in backlog or backlog["globex"].claimable == 0

    # a minute later the window has rolled: the rest goes through (time moved by moving the claims)
    with engine.begin() as conn:
        conn.execute(
            sa.update(whatsapp_webhook_logs).values(claimed_at=whatsapp_webhook_logs.c.claimed_at - timedelta(seconds=61))
        )
    run_processing(engine, settings, idle_exit_seconds=0, max_seconds=10.0)
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
    assert len(rows(engine, whatsapp_messages)) == 135  # nothing dropped, each message once


def test_concurrent_claims_never_exceed_the_in_flight_limit(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for _ in range(60):
        land(engine, text_body(ACME_WABA, ACME_PHONE))
    barrier = threading.Barrier(6)
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        barrier.wait()
        got = claim_batch(engine, 50, 60, org_max_in_flight=10, org_per_minute=1000)
        with lock:
            claimed.extend(r.id for r in got)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)) == 10
    assert lanes(engine)["acme"].in_flight == 10


def test_unbound_wabas_share_one_lane_and_move_to_their_organization_once_bound(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for _ in range(15):
        land(engine, text_body(UNKNOWN_WABA, UNKNOWN_PHONE))
    assert lanes(engine)["unrouted"].claimable == 15

    first = claim_batch(engine, 100, 60, org_max_in_flight=10, org_per_minute=100)
    assert len(first) == 10  # the unrouted lane has a quota of its own too

    with engine.begin() as conn:
        initech = ensure_organization(conn, "initech", "Initech")
        bind_waba(conn, initech, UNKNOWN_WABA, [PhoneNumber(UNKNOWN_PHONE, "15550000999", "Initech")], status="active")
    backlog = lanes(engine)
    assert "unrouted" not in backlog
    assert backlog["initech"].in_flight == 10 and backlog["initech"].claimable == 5


def test_process_batch_applies_the_configured_quota(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for _ in range(12):
        land(engine, text_body(ACME_WABA, ACME_PHONE))
    land(engine, fixture_bytes("not_json.txt"))  # unrouted lane, dead at once: never blocks a quota
    batch = process_batch(engine, quota(settings, per_minute=5, in_flight=3))
    assert len(batch) == 4  # 3 of Acme + the unrouted one
    batch = process_batch(engine, quota(settings, per_minute=5, in_flight=3))
    assert len(batch) == 2 and batch.held_back > 0  # 5 per minute reached
    assert process_batch(engine, quota(settings, per_minute=5, in_flight=3)) == []
    with engine.connect() as conn:
        [acme] = [b for b in backlog_by_organization(conn, utcnow()) if b.organization_external_id == "acme"]
    assert (acme.claimable, acme.claimed_last_minute, acme.in_flight) == (7, 5, 0)


def test_status_shows_an_organization_called_unrouted_apart_from_the_unrouted_lane(engine: Engine, settings: Settings) -> None:
    from wa_core.reporting.summary import format_summary, stored_summary

    with engine.begin() as conn:
        org = ensure_organization(conn, "unrouted", "Unrouted Ltd")
        bind_waba(conn, org, GLOBEX_WABA, [PhoneNumber(GLOBEX_PHONE, "15550000002", "Unrouted Ltd")], status="active")
    land(engine, text_body(GLOBEX_WABA, GLOBEX_PHONE))
    for _ in range(2):
        land(engine, text_body(UNKNOWN_WABA, UNKNOWN_PHONE))
    with engine.connect() as conn:
        summary = stored_summary(conn)
    claimable = {lane["organization_external_id"]: lane["claimable"] for lane in summary["backlog"]}
    assert claimable == {None: 2, "unrouted": 1}
    text = format_summary(summary)
    # one spelling for the unrouted lane (UNROUTED_LANE, was "(unrouted)" here only); the organization
    # called so is shown with its id
    assert "    unrouted      claimable=2" in text and f"    unrouted ({org}) claimable=1" in text


def test_postgres_skip_scan_finds_the_same_candidates_as_the_window_query(engine: Engine, settings: Settings) -> None:
    """The fast Postgres candidate query must agree with the plain window query it replaces."""
    import random

    from wa_core.processing.claim import _PG_CANDIDATES, _window_candidates

    bind_fixture_numbers(engine)
    rng = random.Random(7)
    wabas = [(ACME_WABA, ACME_PHONE), (GLOBEX_WABA, GLOBEX_PHONE), (UNKNOWN_WABA, UNKNOWN_PHONE)]
    ids = [land(engine, text_body(*rng.choice(wabas))) for _ in range(120)]
    ids += [land(engine, fixture_bytes("not_json.txt")) for _ in range(5)]  # no routing hint
    now = utcnow()
    logs = whatsapp_webhook_logs.c
    with engine.begin() as conn:  # a mix of states: leased, failed due and not due, processed
        for row_id in rng.sample(ids, 40):
            kind = rng.choice(("leased", "due", "later", "processed", "lease_expired"))
            values = {
                "leased": {"locked_until": now + timedelta(minutes=5)},
                "lease_expired": {"locked_until": now - timedelta(minutes=5)},
                "due": {"status": "failed", "next_attempt_at": now - timedelta(seconds=5)},
                "later": {"status": "failed", "next_attempt_at": now + timedelta(minutes=5)},
                "processed": {"status": "processed"},
            }[kind]
            conn.execute(sa.update(whatsapp_webhook_logs).where(logs.id == row_id).values(**values))
    with engine.connect() as conn:
        for k in (1, 3, 11, 200):
            fast = [tuple(r) for r in conn.execute(_PG_CANDIDATES, {"now": now, "k": k})]
            plain = [tuple(r) for r in _window_candidates(conn, now, k)]
            assert fast == plain, k
            assert fast  # the data set has claimable rows in every lane
