"""The set-based engine on the real Postgres: the same results as the per-item path, isolation
by splitting, poison field names, statuses right under concurrent runs, leases that hold,
kill -9 mid-batch, outcomes that cannot be stored."""

from __future__ import annotations

import json
from datetime import timedelta
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy.engine import Engine

from tests.conftest import FIXTURES
from tests.core.test_processing import acme_value, body_with, text
from tests.core.test_properties import TABLES, arbitrary_body
from tests.helpers import ACME_PHONE, ACME_WABA, bind_fixture_numbers, land, rows, webhook_row
from wa_core.db.schema import utcnow
from wa_core.db.schema import (
    metadata,
    organizations,
    whatsapp_configs,
    whatsapp_contacts,
    whatsapp_history_chunks,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_webhook_logs,
)
from wa_core.db.schema_coexistence import whatsapp_coexistence_syncs
from wa_core.processing import engine as engine_module
from wa_core.processing.claim import claim_batch
from wa_core.processing.dispatch import apply_webhook, finish_row
from wa_core.processing.engine import LEASE_LOST, apply_batch
from wa_core.processing.runner import process_batch, run_processing
from wa_core.processing.store import STATUS_RANK
from wa_core.settings import Settings

CORPUS = sorted(p for p in [*FIXTURES.glob("*.json"), *FIXTURES.glob("*.txt")] if p.name not in ("signatures.json", "expected.json"))
OUTCOME_COLUMNS = ("status", "items_received", "items_processed", "items_ignored", "items_failed", "items_dead", "error_kind",
                   "last_error", "fields", "organization_id", "attempts")


def unbounded(settings: Settings) -> Settings:
    """Settings whose per-organization caps never bind (this file tests the engine, not quotas)."""
    return settings.model_copy(update={"processing_org_webhooks_per_minute": 10**9, "processing_org_max_in_flight": 10**6})


def claim(engine: Engine, limit: int = 5000, lease: float = 60.0):
    return claim_batch(engine, limit, lease, org_max_in_flight=10**6, org_per_minute=10**9)


@pytest.fixture()
def splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records how many webhooks each split of a failed set-based write held (none expected
    on good data: the set-based path must not fall back silently)."""
    seen: list[int] = []
    original = engine_module._Batch._split

    def spy(self, group, exc):
        seen.append(len(group.entries))
        return original(self, group, exc)

    monkeypatch.setattr(engine_module._Batch, "_split", spy)
    return seen


def per_item_reference(engine: Engine, settings: Settings) -> None:
    """The loop before the engine: each claimed row alone, each item in a savepoint."""
    for row in claim(engine):
        with engine.connect() as conn:
            outcome = apply_webhook(conn, row.id, row.body, row.received_at, {})
            finish_row(conn, outcome, row.attempts, settings)
            conn.commit()


def outcomes(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        logs = whatsapp_webhook_logs.c
        return [tuple(r) for r in conn.execute(sa.select(*(logs[c] for c in OUTCOME_COLUMNS)).order_by(logs.id))]


def state(engine: Engine) -> tuple:
    """Outcomes and rows, with what differs between two otherwise equal runs left out (ids,
    our own times) and organizations named by their external id."""
    with engine.connect() as conn:
        orgs = {str(r.id): r.external_id for r in conn.execute(sa.select(organizations.c.id, organizations.c.external_id))}
        linked = sorted(tuple(r) for r in conn.execute(sa.text(  # which contact each message points at, by its ids
            "SELECT m.wamid, c.wa_id, c.user_id FROM whatsapp_messages m LEFT JOIN whatsapp_contacts c ON c.id = m.contact_id"
        )))

    def named(value):
        return orgs.get(str(value), str(value))

    volatile = {"id", "connection_id", "contact_id", "webhook_log_id", "received_at", "created_at", "updated_at", "first_seen_at",
                "last_seen_at", "applied_at", "processed_at", "claimed_at", "next_attempt_at", "locked_until", "token_checked_at",
                "completed_at", "declined_at"}
    tables = {}
    for table in (*TABLES, whatsapp_history_chunks, whatsapp_configs, whatsapp_coexistence_syncs):
        cols = [c.name for c in table.columns if c.name not in volatile]
        tables[table.name] = sorted(tuple(named(getattr(r, c)) for c in cols) for r in rows(engine, table))
    return [tuple(named(v) for v in row) for row in outcomes(engine)], tables, linked


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


def both_ways(engine: Engine, settings: Settings, bodies: list[bytes]) -> tuple[tuple, tuple]:
    """(state after the per-item loop, state after one set-based batch) for the same bodies."""
    results = []
    arrived = utcnow()  # the same arrival times both ways: values derived from them must agree
    for apply in (per_item_reference, lambda e, s: apply_batch(e, claim(e), s)):
        reset(engine)
        bind_fixture_numbers(engine)
        for i, body in enumerate(bodies):
            land(engine, body, arrived + timedelta(milliseconds=i))
        apply(engine, settings)
        results.append(state(engine))
    return results[0], results[1]


# --- the same results as the per-item path ---------------------------------------------------
def test_a_batch_of_the_whole_corpus_twice_gives_what_the_per_item_path_gives(engine: Engine, settings: Settings, splits) -> None:
    from wa_dev.simulate import SyntheticStream, synthetic_numbers

    stream = SyntheticStream(synthetic_numbers(1), seed=3)
    synthetic = [stream.next_body().replace(b"100000000001101", ACME_WABA.encode()).replace(b"200000000001101", ACME_PHONE.encode())
                 for _ in range(200)]
    corpus = [p.read_bytes() for p in CORPUS]
    bodies = corpus + synthetic + corpus  # redeliveries inside the same batch
    reference, engine_result = both_ways(engine, settings, bodies)
    assert engine_result == reference
    assert {r[0] for r in reference[0]} == {"processed", "failed", "dead"}
    assert len(rows(engine, whatsapp_messages)) > 100
    assert splits == []


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies=st.lists(arbitrary_body, min_size=1, max_size=8))
def test_arbitrary_bodies_give_the_same_outcomes_and_rows_either_way(engine: Engine, settings: Settings, bodies: list[bytes]) -> None:
    reference, engine_result = both_ways(engine, settings, bodies)
    assert engine_result == reference


# --- isolation -----------------------------------------------------------------------------
def test_a_value_the_checks_miss_costs_only_its_own_row_a_split(engine: Engine, settings: Settings, splits, monkeypatch) -> None:
    """A value only the database refuses (checks disabled here) fails its item alone: the
    batch is split down to that row, whose other items are applied one by one."""
    import wa_core.processing.records as records

    monkeypatch.setattr(records, "check_values", lambda table, values: None)
    bind_fixture_numbers(engine)
    good = [land(engine, body_with(acme_value(messages=[text(f"wamid.ISO{i}")]))) for i in range(15)]
    bad = land(engine, body_with(acme_value(messages=[text("wamid.SIBLING1"), text("wamid." + "X" * 300), text("wamid.SIBLING2")])))
    good += [land(engine, body_with(acme_value(messages=[text(f"wamid.ISO{i}")]))) for i in range(15, 30)]
    outcomes_ = apply_batch(engine, claim(engine), settings)
    assert [o.status for o in outcomes_].count("processed") == 30
    row = webhook_row(engine, bad)
    assert (row.status, row.error_kind, row.items_received, row.items_processed, row.items_failed) == ("dead", "invalid_value", 3, 2, 1)
    assert "messages[1]" in row.last_error and "StringDataRightTruncation" in row.last_error
    stored = {r.wamid for r in rows(engine, whatsapp_messages)}
    assert stored == {f"wamid.ISO{i}" for i in range(30)} | {"wamid.SIBLING1", "wamid.SIBLING2"}
    assert splits and splits[-1] == 1 and max(splits) == 31  # halved down to the bad row, never further


@pytest.mark.parametrize("poison", ["messages\u0000", "messages\udc80", "\ud800"])
def test_a_poison_field_name_affects_only_its_row(engine: Engine, settings: Settings, splits, poison: str) -> None:
    bind_fixture_numbers(engine)
    ids = [land(engine, body_with(acme_value(messages=[text(f"wamid.POISON{i}")]))) for i in range(3)]
    bad_body = json.dumps({"object": "whatsapp_business_account",
                           "entry": [{"id": ACME_WABA, "changes": [{"field": poison, "value": acme_value(messages=[text("wamid.P")])}]}]}).encode()
    assert b"\\u" in bad_body  # the NUL or the lone surrogate travels escaped, as Meta would send it
    bad = land(engine, bad_body)
    ids += [land(engine, body_with(acme_value(messages=[text(f"wamid.POISON{i}")]))) for i in range(3, 6)]
    settings = settings.model_copy(update={"processing_max_attempts": 1})
    batch = process_batch(engine, unbounded(settings))
    assert len(batch) == 7
    assert {webhook_row(engine, i).status for i in ids} == {"processed"}
    assert len(rows(engine, whatsapp_messages)) == 6
    row = webhook_row(engine, bad)
    assert (row.status, row.items_ignored) == ("processed", 1)  # an unknown field: stored and ignored
    assert row.fields == poison.replace("\u0000", "\ufffd").replace("\udc80", "\ufffd").replace("\ud800", "\ufffd")
    assert splits == []


def test_a_row_whose_outcome_cannot_be_stored_is_dead_alone(engine: Engine, settings: Settings, monkeypatch) -> None:
    import uuid

    import wa_core.processing.engine as eng

    bind_fixture_numbers(engine)
    ids = [land(engine, body_with(acme_value(messages=[text(f"wamid.OUT{i}")]))) for i in range(5)]
    original = eng.settle

    def settle(parsed):  # the organization vanished meanwhile: the outcome's foreign key fails
        outcome = original(parsed)
        if outcome.webhook_log_id == ids[2]:
            outcome.organization_id = uuid.uuid4()
        return outcome

    monkeypatch.setattr(eng, "settle", settle)
    result = apply_batch(engine, claim(engine), settings)
    assert [o.status for o in result] == ["processed", "processed", "dead", "processed", "processed"]
    row = webhook_row(engine, ids[2])
    assert (row.status, row.error_kind, row.items_failed) == ("dead", "outcome_unstorable", 1)
    assert "could not be stored" in row.last_error and "ForeignKeyViolation" in row.last_error
    assert row.locked_until is None and len(rows(engine, whatsapp_messages)) == 5


def test_a_deadlock_is_retried_not_split(engine: Engine, settings: Settings, splits, monkeypatch) -> None:
    import wa_core.processing.engine as eng

    class Deadlock(Exception):
        sqlstate = "40P01"

    bind_fixture_numbers(engine)
    for i in range(4):
        land(engine, body_with(acme_value(messages=[text(f"wamid.DL{i}")])))
    original, calls = eng.write_plans, []

    def flaky(conn, plans):
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT …", {}, Deadlock())
        return original(conn, plans)

    monkeypatch.setattr(eng, "write_plans", flaky)
    assert {o.status for o in apply_batch(engine, claim(engine), settings)} == {"processed"}
    assert len(calls) == 2 and splits == [] and len(rows(engine, whatsapp_messages)) == 4


# --- statuses right under any interleaving ------------------------------------------------------
def _echo(wamid: str) -> bytes:
    message = {"from": "15550000001", "to": "15550000101", "id": wamid, "timestamp": "1767225600", "type": "text", "text": {"body": "x"}}
    return body_with(acme_value(message_echoes=[message]), field="smb_message_echoes")


def _status(wamid: str, status: str, ts: int) -> bytes:
    return body_with(acme_value(statuses=[{"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": "15550000101"}]))


@pytest.mark.parametrize("repetition", range(10))
def test_concurrent_runs_leave_every_message_at_its_highest_status(engine: Engine, settings: Settings, monkeypatch, repetition: int) -> None:
    """Shuffled echoes (the outbound messages) and their statuses, applied by four runs at
    once on separate claims. Each write transaction lingers a few milliseconds before its
    commit (as a busy database would make it), so runs really overlap."""
    import wa_core.processing.engine as eng

    rng = random.Random(repetition)
    bind_fixture_numbers(engine)
    expected, bodies = {}, []
    for i in range(150):
        wamid = f"wamid.RACE{repetition}x{i:04d}"
        names = rng.choice([["sent"], ["sent", "delivered"], ["sent", "delivered", "read"], ["sent", "failed"], ["sent", "delivered", "read", "played"]])
        expected[wamid] = max(names, key=STATUS_RANK.get)
        bodies.append(_echo(wamid))
        bodies += [_status(wamid, name, 1767225600 + k) for k, name in enumerate(names)]
    rng.shuffle(bodies)
    for body in bodies:
        land(engine, body)
    original = eng._Batch._renew

    def lingering(self, group):  # the last step before a write transaction commits
        original(self, group)
        time.sleep(random.uniform(0, 0.03))

    monkeypatch.setattr(eng._Batch, "_renew", lingering)
    fast = unbounded(settings)
    start, errors = threading.Barrier(4), []

    def run(seed: int) -> None:
        sizes = random.Random(seed)
        try:
            start.wait()
            while process_batch(engine, fast, limit=sizes.randint(3, 15)):
                pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(repetition * 10 + k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    logs = rows(engine, whatsapp_webhook_logs)
    assert {r.status for r in logs} == {"processed"} and {r.attempts for r in logs} == {1}  # separate claims
    current = {r.wamid: r.current_status for r in rows(engine, whatsapp_messages)}
    wrong = {w: (current.get(w), s) for w, s in expected.items() if current.get(w) != s}
    assert not wrong, f"{len(wrong)} of 150 wrong: {list(wrong.items())[:5]}"


# --- leases that hold ---------------------------------------------------------------------
def test_a_slow_batch_keeps_its_lease_and_is_applied_once(engine: Engine, settings: Settings, monkeypatch) -> None:
    import wa_core.processing.engine as eng

    bind_fixture_numbers(engine)
    row_id = land(engine, body_with(acme_value(messages=[text("wamid.SLOW")])))
    settings = settings.model_copy(update={"processing_lease_seconds": 1.0})
    original, written = eng.write_plans, threading.Event()

    def slow(conn, plans):
        time.sleep(3.5)  # three and a half leases
        original(conn, plans)
        written.set()

    monkeypatch.setattr(eng, "write_plans", slow)
    stolen: list = []
    done = threading.Event()

    def other_run() -> None:
        while not done.is_set():
            stolen.extend(claim(engine, lease=1.0))
            time.sleep(0.1)

    rows_ = claim(engine, lease=1.0)
    poller = threading.Thread(target=other_run)
    poller.start()
    try:
        [outcome] = apply_batch(engine, rows_, settings)
    finally:
        done.set()
        poller.join()
    assert written.is_set() and outcome.status == "processed"
    assert stolen == []
    row = webhook_row(engine, row_id)
    assert (row.status, row.attempts, row.locked_until) == ("processed", 1, None)
    assert len(rows(engine, whatsapp_messages)) == 1


def test_a_run_that_lost_its_lease_never_overwrites_the_next_claims_outcome(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    row_id = land(engine, body_with(acme_value(messages=[text("wamid.LOST")])))
    [stale] = claim(engine, lease=0.0)  # this run's lease is already over…
    [fresh] = claim(engine, lease=60.0)  # …and another run claimed the row
    assert fresh.attempts == stale.attempts + 1
    [outcome] = apply_batch(engine, [stale], settings)
    assert outcome.status == LEASE_LOST
    row = webhook_row(engine, row_id)
    assert (row.status, row.attempts) == ("pending", 2) and row.locked_until is not None  # still the second claim's
    [second] = apply_batch(engine, [fresh], settings)
    assert second.status == "processed" and len(rows(engine, whatsapp_messages)) == 1


KILL_SCRIPT = """
import os, pathlib, sys, time
from wa_core.settings import get_settings
from wa_core.db.engine import create_processing_engine
import wa_core.processing.engine as eng
from wa_core.processing.runner import process_batch, run_processing
settings = get_settings().model_copy(update={"processing_org_webhooks_per_minute": 10**9, "processing_org_max_in_flight": 10**6})
marker = pathlib.Path(sys.argv[1])
if sys.argv[2] == "after_writes":
    original = eng.settle_messages
    def stop_here(*a, **kw):  # the batch's writes are committed, its outcomes are not
        marker.write_text("x")
        time.sleep(600)
    eng.settle_messages = stop_here
engine = create_processing_engine(settings)
while process_batch(engine, settings, limit=int(sys.argv[3])):
    marker.write_text("x")
"""


@pytest.mark.parametrize("where", ["after_writes", "anywhere"])
def test_kill_9_mid_batch_then_restart_applies_everything_exactly_once(engine: Engine, settings: Settings, tmp_path, where: str) -> None:
    bind_fixture_numbers(engine)
    wamids = [f"wamid.KILL{i:04d}" for i in range(600)]
    for i, wamid in enumerate(wamids):
        land(engine, body_with(acme_value(contacts=[{"profile": {"name": "K"}, "wa_id": f"1555000{i % 40:04d}"}],
                                          messages=[text(wamid, sender=f"1555000{i % 40:04d}")])))
        land(engine, _status(wamid, "delivered", 1767225600))
    marker = tmp_path / "progress"
    env = {**os.environ, "PROCESSING_LEASE_SECONDS": "2"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(marker), where, "100"], env=env)
    try:
        while not marker.exists():
            assert proc.poll() is None, "the processing process ended before it was killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if where == "after_writes":  # its writes are committed, its rows still leased by the dead run
        logs = rows(engine, whatsapp_webhook_logs)
        assert any(r.status == "pending" and r.locked_until is not None for r in logs)
        assert len(rows(engine, whatsapp_messages)) > 0
    fast = unbounded(settings)
    deadline = time.monotonic() + 60
    while any(r.status != "processed" for r in rows(engine, whatsapp_webhook_logs)):  # restart: drain once the leases expire
        assert time.monotonic() < deadline
        if not process_batch(engine, fast):
            time.sleep(0.2)
    messages = [r.wamid for r in rows(engine, whatsapp_messages)]
    assert sorted(messages) == wamids  # each once
    statuses = [(r.wamid, r.status) for r in rows(engine, whatsapp_message_statuses)]
    assert len(statuses) == len(set(statuses)) == 600
    contacts = rows(engine, whatsapp_contacts)
    assert len(contacts) == len({c.wa_id for c in contacts}) == 40
    logs = rows(engine, whatsapp_webhook_logs)
    assert {(r.status, r.items_received, r.items_processed, r.items_failed) for r in logs} == {("processed", 1, 1, 0)}
    assert {r.attempts for r in logs} <= {1, 2}
    if where == "after_writes":
        assert any(r.attempts == 2 for r in logs)  # the dead run's batch, claimed and applied again


# --- SQLite, the embedded default --------------------------------------------------------------
def test_sqlite_batches_give_what_the_per_item_path_gives(tmp_path, splits) -> None:
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.migrate import upgrade

    sqlite_settings = Settings(_env_file=None, database_url=None, data_dir=str(tmp_path))
    upgrade(sqlite_settings)
    lite = create_sync_engine(sqlite_settings)
    try:
        bodies = [p.read_bytes() for p in CORPUS] * 2
        reference, engine_result = both_ways(lite, sqlite_settings, bodies)
        assert engine_result == reference
        assert splits == []
        assert len(rows(lite, whatsapp_messages)) > 20
    finally:
        lite.dispose()


# --- contacts created by two runs at once ------------------------------------------------------
def test_two_runs_creating_the_same_contacts_end_with_one_row_each(engine: Engine, settings: Settings) -> None:
    """The second run's insert waits for the first, finds the contact taken, reads it and
    uses it (a second pass), instead of failing or creating a twin."""
    from wa_core.db.schema import utcnow
    from wa_core.processing.contacts import resolve_contacts
    from wa_core.processing.records import ContactRef

    orgs = bind_fixture_numbers(engine)
    now = utcnow()
    refs = [ContactRef(orgs["acme"], f"1555000{i:04d}", None, now, profile_name=f"P{i}") for i in range(20)]
    result: dict = {}
    with engine.connect() as first, engine.connect() as second:
        ids_first = resolve_contacts(first, refs)  # inserted, not committed yet
        pid = second.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

        def other_run() -> None:
            result["ids"] = resolve_contacts(second, list(reversed(refs[5:])) + refs[:5])
            second.commit()

        t = threading.Thread(target=other_run)
        t.start()
        with engine.connect() as probe:  # wait until the second run waits on the first's rows
            while not probe.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %(pid)s AND wait_event_type = 'Lock'", {"pid": pid}
            ).scalar_one():
                assert t.is_alive()
                time.sleep(0.01)
        first.commit()
        t.join()
    by_wa = dict(zip((r.wa_id for r in list(reversed(refs[5:])) + refs[:5]), result["ids"]))
    assert [by_wa[r.wa_id] for r in refs] == ids_first
    stored = rows(engine, whatsapp_contacts)
    assert len(stored) == 20 and {c.id for c in stored} == set(ids_first)


def test_break_it_huge_integer_timestamps_and_long_echo_types_are_stored_not_dead(engine: Engine, settings: Settings) -> None:
    # found by a break-it pass: float() of a 400-digit integer raised OverflowError (the item was
    # dead and nothing stored); an echo's over-long type or history status failed the item
    from wa_core.processing.timeparse import meta_time

    assert meta_time(10**400) is None and meta_time(-(10**400)) is None
    bind_fixture_numbers(engine)
    huge = "1" + "0" * 400
    inbound = acme_value(messages=[{"from": "15550001111", "id": "wamid.HUGE_TS", "timestamp": "0", "type": "text", "text": {"body": "hi"}}])
    body = body_with(inbound).replace(b'"timestamp": "0"', b'"timestamp": ' + huge.encode())
    echo = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": ACME_PHONE},
        "message_echoes": [{"from": "15550000001", "to": "15550001111", "id": "wamid.LONG_TYPE", "timestamp": "1700000000", "type": "x" * 10000}],
    }
    echo_body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": ACME_WABA, "changes": [{"field": "smb_message_echoes", "value": echo}]}]}).encode()
    ids = [land(engine, body), land(engine, echo_body)]
    run_processing(engine, settings, idle_exit_seconds=0)
    assert [webhook_row(engine, i).status for i in ids] == ["processed", "processed"]
    stored = {r.wamid: r for r in rows(engine, whatsapp_messages)}
    assert stored["wamid.HUGE_TS"].provider_timestamp is None
    assert stored["wamid.LONG_TYPE"].type == "x" * 64


def test_a_run_tunes_the_garbage_collector_only_while_it_processes(engine: Engine, settings: Settings) -> None:
    import gc

    from wa_core.gc_tuning import GC_THRESHOLDS

    bind_fixture_numbers(engine)
    land(engine, body_with(acme_value(messages=[text("wamid.GC1")])))
    before, seen = gc.get_threshold(), []
    stats = run_processing(engine, settings, idle_exit_seconds=0, on_batch=lambda s: seen.append(gc.get_threshold()))
    assert stats.webhooks == 1 and seen == [GC_THRESHOLDS]
    assert gc.get_threshold() == before  # restored: the process's own setting is its own again


def test_overlapping_runs_restore_the_process_gc_thresholds() -> None:
    import gc

    from wa_core.gc_tuning import GC_THRESHOLDS, batch_friendly_gc

    original = gc.get_threshold()
    try:
        first, second = batch_friendly_gc(), batch_friendly_gc()
        first.__enter__()
        second.__enter__()  # a second run (another thread) starts while the first processes
        first.__exit__(None, None, None)  # the first ends first: the second still processes
        assert gc.get_threshold() == GC_THRESHOLDS
        second.__exit__(None, None, None)
        assert gc.get_threshold() == original
    finally:
        gc.set_threshold(*original)
