"""Pause and resume of one organization or one WABA (wa_core.processing.controls): rows keep
landing and wait, resume releases them, nothing is lost; the backlog views show it. And the
embedded SQLite default: fair share, caps, pause and shards work there too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.core.test_fairness import UNKNOWN_PHONE, UNKNOWN_WABA, by_waba, land_many, lanes, text_body
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA, bind_fixture_numbers, rows
from wa_core.db.engine import create_sync_engine
from wa_core.db.migrate import upgrade
from wa_core.db.schema import whatsapp_messages, whatsapp_webhook_logs
from wa_core.processing.claim import claim_batch, count_claimable
from wa_core.processing.controls import InvalidControl, UnknownOrganization, UnknownWaba, set_paused
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings

ACME_SECOND_WABA, ACME_SECOND_PHONE = "100000000000011", "200000000000011"


def drain(engine: Engine, settings: Settings):
    return run_processing(engine, settings, idle_exit_seconds=0)


def statuses(engine: Engine, waba_id: str) -> list[str]:
    return sorted(r.status for r in rows(engine, whatsapp_webhook_logs, whatsapp_webhook_logs.c.waba_id == waba_id))


def test_a_paused_organization_keeps_landing_waits_and_resumes_without_loss(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(5)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(3)])
    with engine.begin() as conn:
        state = set_paused(conn, organization="acme", paused=True, reason="customer asked")
    assert (state.target, state.paused, state.changed, state.waiting) == ("organization", True, True, 5)
    assert state.organization_external_id == "acme" and state.paused_reason == "customer asked"

    stats = drain(engine, settings)
    assert stats.webhooks == 3 and statuses(engine, GLOBEX_WABA) == ["processed"] * 3
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(2)])  # still landing while paused
    assert drain(engine, settings).webhooks == 0  # nothing claimable: the run does not wait for a pause
    assert statuses(engine, ACME_WABA) == ["pending"] * 7
    with engine.connect() as conn:
        assert count_claimable(conn) == 0
    acme = lanes(engine)["acme"]
    assert (acme.paused, acme.waiting_paused, acme.claimable, acme.oldest_claimable_at) == (True, 7, 0, None)

    with engine.begin() as conn:  # idempotent: pausing again changes nothing, keeps the first pause
        again = set_paused(conn, organization="acme", paused=True, reason="other")
    assert (again.changed, again.paused_at, again.paused_reason) == (False, state.paused_at, "customer asked")

    with engine.begin() as conn:
        resumed = set_paused(conn, organization=str(state.organization_id), paused=False)
    assert (resumed.paused, resumed.changed, resumed.waiting, resumed.paused_reason) == (False, True, 7, None)
    assert resumed.resumed_at is not None
    with engine.connect() as conn:
        assert count_claimable(conn) == 7
    assert drain(engine, settings).webhooks == 7
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
    assert len(rows(engine, whatsapp_messages)) == 10  # every webhook applied once
    with engine.begin() as conn:
        assert set_paused(conn, organization="acme", paused=False).changed is False
    acme = lanes(engine)["acme"]  # still listed for its claims of the last minute
    assert (acme.paused, acme.waiting_paused, acme.claimable, acme.claimed_last_minute) == (False, 0, 0, 7)


def test_a_paused_waba_waits_while_the_rest_of_its_organization_flows(engine: Engine, settings: Settings) -> None:
    orgs = bind_fixture_numbers(engine)
    from wa_core.bindings import PhoneNumber, bind_waba

    with engine.begin() as conn:
        bind_waba(conn, orgs["acme"], ACME_SECOND_WABA, [PhoneNumber(ACME_SECOND_PHONE, "15550000011", "Acme 2")], status="active")
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(4)] + [text_body(ACME_SECOND_WABA, ACME_SECOND_PHONE) for _ in range(3)])
    with engine.begin() as conn:
        state = set_paused(conn, waba_id=int(ACME_WABA), paused=True)  # a number is a WABA id too
    assert (state.target, state.waba_id, state.organization_external_id, state.waiting) == ("waba", ACME_WABA, "acme", 4)

    got = by_waba(claim_batch(engine, 100, 60))
    assert set(got) == {ACME_SECOND_WABA}
    acme = lanes(engine)["acme"]
    assert (acme.paused, acme.paused_wabas, acme.waiting_paused, acme.in_flight) == (False, (ACME_WABA,), 4, 3)

    with engine.begin() as conn:
        set_paused(conn, waba_id=ACME_WABA, paused=False)
    drain(engine, settings.model_copy(update={"processing_lease_seconds": 60}))
    assert statuses(engine, ACME_WABA) == ["processed"] * 4


def test_an_unbound_waba_with_waiting_webhooks_can_be_paused_and_unknown_ones_are_refused(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land_many(engine, [text_body(UNKNOWN_WABA, UNKNOWN_PHONE) for _ in range(2)])
    with engine.begin() as conn:
        state = set_paused(conn, waba_id=UNKNOWN_WABA, paused=True)
    assert (state.organization_id, state.waiting) == (None, 2)
    unrouted = lanes(engine)["unrouted"]
    assert (unrouted.paused_wabas, unrouted.waiting_paused, unrouted.claimable) == ((UNKNOWN_WABA,), 2, 0)
    assert claim_batch(engine, 10, 60) == []

    with engine.begin() as conn:
        for bad in ("12ab", "", True, 1.5, "1" * 65, None):
            with pytest.raises(InvalidControl):
                set_paused(conn, waba_id=bad, paused=True)  # None: no target at all
        with pytest.raises(InvalidControl):
            set_paused(conn, organization="acme", waba_id=ACME_WABA, paused=True)  # two targets
        with pytest.raises(UnknownWaba):
            set_paused(conn, waba_id="100000000000888", paused=True)
        with pytest.raises(UnknownOrganization):
            set_paused(conn, organization="nobody", paused=True)


def test_a_paused_organization_is_listed_even_with_nothing_waiting(engine: Engine, settings: Settings) -> None:
    from wa_core.reporting.summary import format_summary, stored_summary

    bind_fixture_numbers(engine)
    with engine.begin() as conn:
        set_paused(conn, organization="globex", paused=True)
    globex = lanes(engine)["globex"]
    assert (globex.paused, globex.claimable, globex.waiting_paused) == (True, 0, 0)
    with engine.connect() as conn:
        text = format_summary(stored_summary(conn))
    assert "globex        paused=True" in text


# --- the embedded SQLite default ------------------------------------------------------------
@pytest.fixture()
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    sqlite = Settings(_env_file=None, data_dir=tmp_path, database_url=None)
    upgrade(sqlite)
    eng = create_sync_engine(sqlite)
    yield eng
    eng.dispose()


def test_the_sqlite_default_claims_fairly_and_honours_caps_pauses_and_shards(sqlite_engine: Engine) -> None:
    from wa_core.backlog import lane_shard
    from wa_core.processing.controls import set_caps

    engine = sqlite_engine
    orgs = bind_fixture_numbers(engine)
    flood = land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(300)])
    globex = land_many(engine, [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(5)])
    first = by_waba(claim_batch(engine, 100, 60, org_max_in_flight=0, org_per_minute=0))
    assert first == {ACME_WABA: flood[:95], GLOBEX_WABA: globex}  # work-conserving and fair

    with engine.begin() as conn:
        set_caps(conn, "acme", max_in_flight=100)
    assert by_waba(claim_batch(engine, 100, 60, org_max_in_flight=0, org_per_minute=0)) == {ACME_WABA: flood[95:100]}
    held = claim_batch(engine, 100, 60, org_max_in_flight=0, org_per_minute=0)
    assert held == [] and held.held_back > 0

    with engine.begin() as conn:
        set_caps(conn, "acme", max_in_flight=None)
        set_paused(conn, organization="acme", paused=True)
    assert claim_batch(engine, 100, 60, org_max_in_flight=0, org_per_minute=0) == []
    with engine.begin() as conn:
        set_paused(conn, organization="acme", paused=False)

    shard = lane_shard(orgs["acme"], 2)
    assert claim_batch(engine, 10, 60, org_max_in_flight=0, org_per_minute=0, shard=1 - shard, shards=2) == []
    assert len(claim_batch(engine, 10, 60, org_max_in_flight=0, org_per_minute=0, shard=shard, shards=2)) == 10
    with engine.connect() as conn:
        assert count_claimable(conn, shard, 2) == 190 and count_claimable(conn, 1 - shard, 2) == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(whatsapp_webhook_logs)).scalar_one() == 305


def test_paused_rows_are_waiting_paused_not_claimable_in_the_lag_dashboard_too(engine: Engine, settings: Settings) -> None:
    # one definition of claimable: the webhook_lag dashboard (and its backlog_age check) agree
    # with the claim and the backlog view about rows held by a pause
    from wa_core.reporting.lag import compute_backlog

    bind_fixture_numbers(engine)
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(4)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(2)])
    with engine.begin() as conn:
        set_paused(conn, organization="acme", paused=True)
    with engine.connect() as conn:
        backlog, claimable = compute_backlog(conn), count_claimable(conn)
    views = lanes(engine)
    assert (backlog.claimable, backlog.waiting_paused) == (2, 4) == (claimable, views["acme"].waiting_paused)
    assert views["globex"].claimable == 2 and views["acme"].claimable == 0


def _hintless(waba_id: str, phone_number_id: str) -> bytes:
    """A webhook without ``entry[].id``: the receiver stores no routing hint (unrouted lane)."""
    import json

    body = json.loads(text_body(waba_id, phone_number_id))
    del body["entry"][0]["id"]
    return json.dumps(body).encode()


def _row(engine: Engine, row_id: int):
    return rows(engine, whatsapp_webhook_logs, whatsapp_webhook_logs.c.id == row_id)[0]


@pytest.mark.parametrize("target", ["organization", "waba"])
def test_a_webhook_without_entry_id_waits_for_its_paused_organization_or_waba(engine: Engine, settings: Settings, target: str) -> None:
    orgs = bind_fixture_numbers(engine)
    with engine.begin() as conn:
        if target == "organization":
            set_paused(conn, organization="acme", paused=True)
        else:
            set_paused(conn, waba_id=ACME_WABA, paused=True)
    [hintless] = land_many(engine, [_hintless(ACME_WABA, ACME_PHONE)])
    assert _row(engine, hintless).waba_id is None  # no hint: claimed from the unrouted lane

    stats = drain(engine, settings)
    assert stats.by_status["released"] == 1 and stats.items_received == 0
    row = _row(engine, hintless)
    assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None), "handed back unapplied, attempt given back"
    assert (row.organization_id, row.waba_id) == (orgs["acme"], ACME_WABA), "its real lane from now on"
    assert rows(engine, whatsapp_messages) == []
    assert drain(engine, settings).webhooks == 0, "held by the pause like its organization's other webhooks"
    assert lanes(engine)["acme"].waiting_paused == 1

    with engine.begin() as conn:
        if target == "organization":
            set_paused(conn, organization="acme", paused=False)
        else:
            set_paused(conn, waba_id=ACME_WABA, paused=False)
    assert drain(engine, settings).by_status == {"processed": 1}
    assert _row(engine, hintless).status == "processed" and len(rows(engine, whatsapp_messages)) == 1


def test_a_webhook_without_entry_id_is_applied_by_the_shard_that_owns_its_organization(engine: Engine, settings: Settings) -> None:
    from wa_core.backlog import UNROUTED_SHARD, lane_shard
    from wa_core.processing.runner import process_batch

    orgs = bind_fixture_numbers(engine)
    # the organization ids are random: take a shard count that puts acme outside the unrouted lane's shard
    shards = next(n for n in range(2, 64) if lane_shard(orgs["acme"], n) != UNROUTED_SHARD)
    [hintless] = land_many(engine, [_hintless(ACME_WABA, ACME_PHONE)])

    first = process_batch(engine, settings, shard=UNROUTED_SHARD, shards=shards)
    assert [o.status for o in first] == ["released"]
    assert process_batch(engine, settings, shard=UNROUTED_SHARD, shards=shards) == [], "never claimed again by the wrong shard"
    second = process_batch(engine, settings, shard=lane_shard(orgs["acme"], shards), shards=shards)
    assert [o.status for o in second] == ["processed"] and second[0].items_processed == 1
    assert _row(engine, hintless).organization_id == orgs["acme"] and len(rows(engine, whatsapp_messages)) == 1


def test_a_webhook_without_entry_id_of_a_running_organization_is_applied_at_once(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    [hintless] = land_many(engine, [_hintless(ACME_WABA, ACME_PHONE)])
    stats = drain(engine, settings)
    assert stats.by_status == {"processed": 1} and _row(engine, hintless).attempts == 1
