"""The prefetch pipeline (wa_core.processing.pipeline) on the real Postgres: a backlog drains
exactly once with the next batch claimed while one is written, a stopping run writes its
prefetched batch, and a batch that changed routing makes the prefetched one parse again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.core.test_processing import _update, acme_value, body_with, text
from tests.helpers import bind_fixture_numbers, land, rows
from wa_core.db.schema import whatsapp_messages, whatsapp_webhook_logs as logs
from wa_core.processing import pipeline as pipeline_module, runner
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings


def _land_messages(engine: Engine, n: int, prefix: str = "wamid.PIPE") -> list[int]:
    return [land(engine, body_with(acme_value(contacts=[{"wa_id": "15550000101"}], messages=[text(f"{prefix}{i}")]))) for i in range(n)]


def _states(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(logs.c.status, sa.func.count()).group_by(logs.c.status)).all())


def _leased(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(logs.c.locked_until.is_not(None))).scalar_one()


@pytest.mark.parametrize("prefetch", [True, False])
def test_a_backlog_drains_exactly_once_with_or_without_prefetch(engine: Engine, settings: Settings, prefetch: bool) -> None:
    bind_fixture_numbers(engine)
    _land_messages(engine, 25)
    stats = run_processing(engine, settings.model_copy(update={"processing_prefetch": prefetch}), batch_size=10, idle_exit_seconds=0)
    assert stats.webhooks == 25 and stats.by_status == {"processed": 25}
    # batch 1 is full, so batch 2 is claimed while it is written; batch 2 is full: batch 3 too
    assert stats.prefetched_batches == (2 if prefetch else 0)
    assert _states(engine) == {"processed": 25} and _leased(engine) == 0
    stored = [r.wamid for r in rows(engine, whatsapp_messages)]
    assert sorted(stored) == sorted(f"wamid.PIPE{i}" for i in range(25))  # each once


def test_a_stopping_run_writes_its_prefetched_batch_first(engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    bind_fixture_numbers(engine)
    _land_messages(engine, 25)
    monkeypatch.setattr(runner, "STOP_CHECK_SECONDS", 0.0)
    done = []
    stats = run_processing(engine, settings, batch_size=10, idle_exit_seconds=0, on_batch=lambda s: done.append(s.batches),
                           should_stop=lambda: bool(done))
    # the stop came after batch 1; batch 2 was already claimed, so it was written before the run ended
    assert stats.ended == "stopped" and stats.batches == 2 and stats.webhooks == 20
    assert _states(engine) == {"processed": 20, "pending": 5}
    assert _leased(engine) == 0  # nothing is left leased for the next run to wait for


def test_a_batch_that_changed_routing_makes_the_prefetched_batch_parse_again(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bind_fixture_numbers(engine)
    calls = []
    real = pipeline_module.reparse
    monkeypatch.setattr(pipeline_module, "reparse", lambda prepared, s: (calls.append(len(prepared.rows)), real(prepared, s)))
    # batch 1: four messages and an account_update; batch 2 (claimed while batch 1 is written): five messages
    _land_messages(engine, 4, "wamid.A")
    land(engine, _update("PARTNER_ADDED", 1767300000, waba_info={"waba_id": "100000000000001", "owner_business_id": "300000000000001"}))
    _land_messages(engine, 5, "wamid.B")
    stats = run_processing(engine, settings, batch_size=5, idle_exit_seconds=0)
    assert stats.webhooks == 10 and stats.prefetched_batches >= 1
    assert calls == [5]  # the prefetched batch, parsed again once, before it was written
    assert len(rows(engine, whatsapp_messages)) == 9

    calls.clear()
    _land_messages(engine, 10, "wamid.C")  # no routing change: no second parse
    run_processing(engine, settings, batch_size=5, idle_exit_seconds=0)
    assert calls == []
