"""Fair processing per organization lane: routing hints, work-conserving round-robin claims,
opt-in caps (global and per organization), shards, the visible backlog.

Issue #11: by default nobody is throttled while capacity is idle (one organization alone gets
whole batches); under contention each lane gets an equal share of a claim. The limits of
issue #5 (``PROCESSING_ORG_MAX_IN_FLIGHT``, ``PROCESSING_ORG_WEBHOOKS_PER_MINUTE``) are caps
that are off unless set; the tests of those caps below set them explicitly and hold them
exactly across concurrent claimers. Pause/resume: tests/core/test_processing_controls.py.
"""

from __future__ import annotations

import json
from collections import Counter
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


# --- caps, when set (the quotas of issue #5, now opt-in) ----------------------------------
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



# --- work-conserving fair share (no caps: the default) -------------------------------------
def land_many(engine: Engine, bodies: list[bytes]) -> list[int]:
    """Land ``bodies`` as the receiver would, in one statement (ids in the order given)."""
    import hashlib

    now = utcnow()
    values = [
        {"body": b, "body_sha256": hashlib.sha256(b).hexdigest(), "body_size": len(b), "signature_status": "valid",
         "waba_id": routing_waba_id(b), "status": "pending", "attempts": 0, "received_at": now, "updated_at": now}
        for b in bodies
    ]
    with engine.begin() as conn:
        ids = conn.execute(sa.insert(whatsapp_webhook_logs).returning(whatsapp_webhook_logs.c.id, sort_by_parameter_order=True), values)
        return list(ids.scalars())


def bind_org(engine: Engine, external_id: str, waba_id: str, phone_number_id: str):
    with engine.begin() as conn:
        org = ensure_organization(conn, external_id, external_id.title())
        bind_waba(conn, org, waba_id, [PhoneNumber(phone_number_id, "1555" + phone_number_id[-7:], external_id)], status="active")
    return org


def by_waba(claim) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in claim:
        out.setdefault(routing_waba_id(r.body), []).append(r.id)
    return out


def test_an_organization_alone_gets_whole_batches_and_drains_at_full_speed(engine: Engine, settings: Settings) -> None:
    assert (settings.processing_org_max_in_flight, settings.processing_org_webhooks_per_minute) == (0, 0)  # no caps
    bind_fixture_numbers(engine)
    ids = land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(450)])
    claims = [claim_batch(engine, 200, 60) for _ in range(3)]  # nothing finished: all three stay leased
    assert [len(c) for c in claims] == [200, 200, 50]
    assert [r.id for c in claims for r in c] == ids  # oldest first, each row once
    assert all(c.held_back == 0 for c in claims)

    with engine.begin() as conn:  # give the rows back, then let runs process them
        conn.execute(sa.update(whatsapp_webhook_logs).values(locked_until=None, attempts=0))
    batches = [len(process_batch(engine, settings, limit=100)) for _ in range(5)]
    assert batches == [100, 100, 100, 100, 50]
    assert len(rows(engine, whatsapp_messages)) == 450


def test_under_contention_small_lanes_are_served_in_the_first_claim(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    flood = land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(1000)])
    globex = land_many(engine, [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(10)])
    unrouted = land_many(engine, [text_body(UNKNOWN_WABA, UNKNOWN_PHONE) for _ in range(10)])

    first = by_waba(claim_batch(engine, 200, 60))
    assert first[GLOBEX_WABA] == globex and first[UNKNOWN_WABA] == unrouted  # all of them, behind 1000 older rows
    assert first[ACME_WABA] == flood[:180]  # the flood fills the rest of the batch, oldest first
    assert by_waba(claim_batch(engine, 200, 60)) == {ACME_WABA: flood[180:380]}


def test_a_claim_deals_rows_round_robin_over_the_lanes(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    flood = land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(1000)])
    globex = land_many(engine, [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(10)])
    unrouted = land_many(engine, [text_body(UNKNOWN_WABA, UNKNOWN_PHONE) for _ in range(10)])
    claims = [by_waba(claim_batch(engine, 12, 60)) for _ in range(3)]
    # equal shares (4 each) while all three lanes wait, the oldest of each lane first
    assert claims[0] == {ACME_WABA: flood[:4], GLOBEX_WABA: globex[:4], UNKNOWN_WABA: unrouted[:4]}
    assert claims[1] == {ACME_WABA: flood[4:8], GLOBEX_WABA: globex[4:8], UNKNOWN_WABA: unrouted[4:8]}
    # the small lanes run out: their last rows, and the flood gets the rest of the batch
    assert claims[2] == {ACME_WABA: flood[8:16], GLOBEX_WABA: globex[8:], UNKNOWN_WABA: unrouted[8:]}


def test_many_busy_lanes_share_a_claim_equally(engine: Engine, settings: Settings) -> None:
    """20 organizations with 60 rows each and a batch of 200: 10 of each, oldest first (the
    per-lane depth of the Postgres candidate query grows only as far as needed)."""
    wabas = [f"1000000000010{i:02d}" for i in range(20)]
    for i, waba in enumerate(wabas):
        bind_org(engine, f"org{i:02d}", waba, f"2000000000010{i:02d}")
    ids: dict[str, list[int]] = {w: [] for w in wabas}
    for _ in range(60):
        for waba, new in zip(wabas, land_many(engine, [text_body(w, "0") for w in wabas])):
            ids[waba].append(new)
    got = by_waba(claim_batch(engine, 200, 60))
    assert got == {w: ids[w][:10] for w in wabas}


# --- caps: exact under concurrency, global and per organization --------------------------------
def test_per_minute_cap_holds_exactly_under_six_concurrent_claimers(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(80)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(80)])
    barrier = threading.Barrier(6)
    claimed: list = []
    lock = threading.Lock()

    def claimer() -> None:
        barrier.wait()
        for _ in range(6):  # keep claiming; every claim after the caps are reached takes nothing
            got = claim_batch(engine, 7, 60, org_max_in_flight=0, org_per_minute=25)
            with lock:
                claimed.extend(by_waba(got).items())

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_lane = Counter()
    all_ids = []
    for waba, ids in claimed:
        per_lane[waba] += len(ids)
        all_ids += ids
    assert per_lane == {ACME_WABA: 25, GLOBEX_WABA: 25}  # exactly the cap, per lane
    assert len(all_ids) == len(set(all_ids))
    assert lanes(engine)["acme"].claimed_last_minute == 25


def test_an_organizations_own_cap_overrides_the_global_one(engine: Engine, settings: Settings) -> None:
    from wa_core.processing.controls import set_caps

    orgs = bind_fixture_numbers(engine)
    initech = bind_org(engine, "initech", UNKNOWN_WABA, UNKNOWN_PHONE)
    land_many(engine, [text_body(w, p) for w, p in ((ACME_WABA, ACME_PHONE), (GLOBEX_WABA, GLOBEX_PHONE), (UNKNOWN_WABA, UNKNOWN_PHONE)) for _ in range(30)])
    with engine.begin() as conn:
        set_caps(conn, "acme", max_in_flight=0)  # no cap for Acme
        set_caps(conn, str(initech), max_in_flight=3)  # tighter for Initech (by id)
    got = claim_batch(engine, 200, 60, org_max_in_flight=5, org_per_minute=0)
    counts = {w: len(v) for w, v in by_waba(got).items()}
    assert counts == {ACME_WABA: 30, GLOBEX_WABA: 5, UNKNOWN_WABA: 3}
    assert got.held_back > 0  # Globex and Initech have more waiting

    # back to the global value, and a per-minute cap of its own that binds without a global one
    with engine.begin() as conn:
        set_caps(conn, "initech", max_in_flight=None, webhooks_per_minute=4)
    again = {w: len(v) for w, v in by_waba(claim_batch(engine, 200, 60, org_max_in_flight=0, org_per_minute=0)).items()}
    assert again == {GLOBEX_WABA: 25, UNKNOWN_WABA: 1}  # Initech: 3 claimed a moment ago + 1 = its 4 per minute
    assert orgs["acme"] != initech


# --- shards ---------------------------------------------------------------------------------
def test_lane_shard_is_the_same_in_python_and_in_postgres(engine: Engine, settings: Settings) -> None:
    import uuid

    from wa_core.backlog import lane_shard, lane_shard_sql

    ids = [uuid.uuid4() for _ in range(300)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    with engine.connect() as conn:
        for shards in (1, 2, 3, 7, 64):
            sql = sa.text(f"SELECT x, {lane_shard_sql('x')} FROM unnest(CAST(:ids AS uuid[])) AS t(x)")
            got = dict(conn.execute(sql, {"ids": [str(i) for i in ids], "shards": shards}).all())
            assert {uuid.UUID(str(k)): v for k, v in got.items()} == {i: lane_shard(i, shards) for i in ids}
            null = conn.execute(sa.text(f"SELECT {lane_shard_sql('CAST(NULL AS uuid)')}"), {"shards": shards}).scalar_one()
            assert null == lane_shard(None, shards) == 0
    spread = Counter(lane_shard(i, 2) for i in ids[:300])
    assert min(spread.values()) > 100  # both shards get a fair part of the lanes


def _many_lanes(engine: Engine, n: int = 12, per_lane: int = 15) -> dict:
    """``n`` organizations with a WABA each plus the unrouted lane, ``per_lane`` rows each;
    returns {row id: lane organization id or None}."""
    lane_of: dict = {}
    wabas = {}
    for i in range(n):
        waba = f"1000000000020{i:02d}"
        wabas[waba] = bind_org(engine, f"shard-org{i:02d}", waba, f"2000000000020{i:02d}")
    wabas[UNKNOWN_WABA] = None
    for waba, org in wabas.items():
        for row_id in land_many(engine, [text_body(waba, "0") for _ in range(per_lane)]):
            lane_of[row_id] = org
    return lane_of


def test_two_shards_never_claim_the_same_lane_and_together_claim_everything(engine: Engine, settings: Settings) -> None:
    from wa_core.backlog import lane_shard
    from wa_core.processing.claim import claimable_by_shard, count_claimable

    lane_of = _many_lanes(engine)
    expected = Counter(lane_shard(org, 2) for org in lane_of.values())
    with engine.connect() as conn:
        assert claimable_by_shard(conn, 2) == [expected[0], expected[1]]
        assert count_claimable(conn, 1, 2) == expected[1] and count_claimable(conn) == len(lane_of)
    assert expected[0] and expected[1]  # 12 random organizations: both shards own lanes

    claimed: dict[int, list[int]] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def claimer(shard: int) -> None:
        barrier.wait()
        while got := claim_batch(engine, 16, 60, shard=shard, shards=2):
            claimed[shard].extend(r.id for r in got)

    threads = [threading.Thread(target=claimer, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lanes_of_shard = {s: {lane_of[i] for i in ids} for s, ids in claimed.items()}
    assert not lanes_of_shard[0] & lanes_of_shard[1]  # no lane claimed by both
    assert sorted(claimed[0] + claimed[1]) == sorted(lane_of)  # everything, each row once
    assert all(lane_shard(lane, 2) == s for s, found in lanes_of_shard.items() for lane in found)
    assert None in lanes_of_shard[0]  # the unrouted lane belongs to shard 0

    with pytest.raises(ValueError):
        claim_batch(engine, 10, 60, shard=2, shards=2)


# --- the Postgres candidate query agrees with the plain window query -----------------------------
def test_postgres_skip_scan_finds_the_same_candidates_as_the_window_query(engine: Engine, settings: Settings) -> None:
    """The fast Postgres candidate query must agree with the plain window query (the SQLite
    one) on a mixed data set: leased, failed due and not due, processed, unrouted rows, rows
    without a routing hint, rows whose recorded organization is not their WABA's binding,
    a paused organization, a paused WABA, and 1, 2 or 3 shards."""
    import random

    from wa_core.processing.claim import _pg_candidates, _window_candidates
    from wa_core.processing.controls import set_paused

    orgs = bind_fixture_numbers(engine)
    initech = bind_org(engine, "initech", "100000000000444", "200000000000444")
    for i in range(6):
        bind_org(engine, f"extra{i}", f"10000000000050{i}", f"20000000000050{i}")
    rng = random.Random(7)
    wabas = [ACME_WABA, GLOBEX_WABA, UNKNOWN_WABA, "100000000000444"] + [f"10000000000050{i}" for i in range(6)]
    ids = land_many(engine, [text_body(rng.choice(wabas), "0") for _ in range(300)])
    ids += land_many(engine, [fixture_bytes("not_json.txt") for _ in range(8)])  # no routing hint
    now = utcnow()
    logs = whatsapp_webhook_logs.c
    unbound = set(rows_ := [r.id for r in rows(engine, whatsapp_webhook_logs, sa.or_(
        whatsapp_webhook_logs.c.waba_id.is_(None), whatsapp_webhook_logs.c.waba_id == UNKNOWN_WABA))])
    assert rows_
    with engine.begin() as conn:  # a mix of states
        for row_id in rng.sample(ids, 120):
            kind = rng.choice(("leased", "due", "later", "processed", "lease_expired", "recorded_org"))
            # the organization processing recorded: any for a bound WABA (the binding wins), Initech else
            recorded = initech if row_id in unbound else rng.choice([orgs["acme"], orgs["globex"], initech])
            values = {
                "leased": {"locked_until": now + timedelta(minutes=5)},
                "lease_expired": {"locked_until": now - timedelta(minutes=5)},
                "due": {"status": "failed", "next_attempt_at": now - timedelta(seconds=5), "organization_id": recorded},
                "later": {"status": "failed", "next_attempt_at": now + timedelta(minutes=5)},
                "processed": {"status": "processed"},
                "recorded_org": {"organization_id": recorded},
            }[kind]
            conn.execute(sa.update(whatsapp_webhook_logs).where(logs.id == row_id).values(**values))
    # Lanes that share a WABA with another lane (an unbound WABA, or no routing hint, with rows
    # whose recorded organization differs): the fast query takes k rows of such a WABA for all
    # its lanes together, so each of these lanes gets the oldest of its rows, maybe fewer.
    shared = {None, initech}
    waba_of = {r.id: r.waba_id for r in rows(engine, whatsapp_webhook_logs)}

    def per_lane(found: list) -> dict:
        out: dict = {}
        for row_id, lane, _, rank in found:
            out.setdefault(lane, []).append((row_id, rank))
        return out

    checked = 0
    for pause in (None, {"organization": "initech"}, {"waba_id": GLOBEX_WABA}, {"waba_id": UNKNOWN_WABA}):
        if pause:
            with engine.begin() as conn:
                set_paused(conn, paused=True, **pause)
        with engine.connect() as conn:
            for shards in (1, 2, 3):
                for shard in range(shards):
                    for k in (1, 3, 11, 400):
                        fast = [tuple(r) for r in _pg_candidates(conn, now, k, shard, shards)]
                        plain = [tuple(r) for r in _window_candidates(conn, now, k, shard, shards)]
                        where = (pause, shards, shard, k)
                        if k == 400:  # deeper than any WABA's rows: nothing is cut, the very same answer
                            assert fast == plain, where
                        f, p = per_lane(fast), per_lane(plain)
                        assert set(f) <= set(p), where
                        everything = per_lane(_window_candidates(conn, now, 10**6, shard, shards))
                        for lane, rows_ in p.items():
                            if lane not in shared:
                                assert f.get(lane) == rows_, where
                                continue
                            for waba in {waba_of[i] for i, _ in everything[lane]}:  # oldest first within each WABA
                                got = [i for i, _ in f.get(lane, []) if waba_of[i] == waba]
                                assert got == [i for i, _ in everything[lane] if waba_of[i] == waba][: len(got)], where
                        checked += len(fast)
    assert checked > 1000  # the data set has claimable rows in the lanes compared
