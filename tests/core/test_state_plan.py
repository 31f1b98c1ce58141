"""The generic state writes (:mod:`wa_core.processing.state`): order-safe upserts and
insert-once history rows, set-based and item by item, on Postgres and SQLite."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from wa_core.processing.state import RowWrite, StatePlan, apply_rows, write_rows

meta = sa.MetaData()
things = sa.Table(
    "test_state_things", meta,
    sa.Column("thing_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(32)),
    sa.Column("event_at", sa.DateTime(timezone=True)),
)
history = sa.Table(
    "test_state_history", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("thing_id", sa.String(64), nullable=False),
    sa.Column("event_key", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32)),
    sa.UniqueConstraint("thing_id", "event_key"),
)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _plans(order: list[int]) -> list[StatePlan]:
    plans = []
    for i in order:
        at = T0 + timedelta(minutes=i)
        plans.append(StatePlan([
            RowWrite(things, {"thing_id": "t1", "status": f"s{i}", "event_at": at}, ("thing_id",), ("status", "event_at"), "event_at"),
            RowWrite(history, {"thing_id": "t1", "event_key": f"e{i}", "status": f"s{i}"}, ("thing_id", "event_key")),
        ]))
    return plans


@pytest.fixture(params=["postgres", "sqlite"])
def db(request, pg_url, tmp_path):
    url = pg_url if request.param == "postgres" else f"sqlite:///{tmp_path}/state.db"
    eng = sa.create_engine(url)
    meta.drop_all(eng)
    meta.create_all(eng)
    yield eng
    meta.drop_all(eng)
    eng.dispose()


def _state(eng) -> tuple[str, int]:
    with eng.connect() as conn:
        status = conn.execute(sa.select(things.c.status)).scalar_one()
        count = conn.execute(sa.select(sa.func.count()).select_from(history)).scalar_one()
    return status, count


@pytest.mark.parametrize("seed", range(5))
def test_newest_event_wins_in_any_order_set_based_or_one_by_one(db, seed) -> None:
    order = list(range(6))
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    # two batches, set-based, in shuffled order; then the whole lot redelivered item by item
    for part in (order[:half], order[half:]):
        with db.begin() as conn:
            write_rows(conn, (w for p in _plans(part) for w in p.rows))
    assert _state(db) == ("s5", 6)
    with db.begin() as conn:
        for plan in _plans(order):
            apply_rows(conn, plan)
    assert _state(db) == ("s5", 6), "a redelivery neither moves the state back nor adds history"


def test_an_older_event_does_not_overwrite_a_newer_one(db) -> None:
    with db.begin() as conn:
        write_rows(conn, _plans([4])[0].rows)
    with db.begin() as conn:
        write_rows(conn, _plans([1])[0].rows)
    assert _state(db) == ("s4", 2)


def test_an_undated_event_never_lets_an_older_one_through(db) -> None:
    """break-it: t=200, then an event without a time, then t=100: the t=200 state stays."""
    undated = StatePlan([RowWrite(things, {"thing_id": "t1", "status": "undated", "event_at": None}, ("thing_id",), ("status", "event_at"), "event_at")])
    for plans in ([_plans([200])[0], undated, _plans([100])[0]],):
        with db.begin() as conn:  # one batch
            write_rows(conn, (w for p in plans for w in p.rows))
        assert _state(db)[0] == "s200"
        with db.begin() as conn:  # one by one
            for plan in plans:
                apply_rows(conn, plan)
        assert _state(db)[0] == "s200"
