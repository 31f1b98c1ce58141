"""``event_delivery_sensor`` keeps a ``deliver_events`` run alive: always with
``EVENT_PUSH_KEEP_ALIVE`` (so a newly set endpoint is served at once), or by default only while
some organization has an enabled push endpoint without it (an install that only pulls then
keeps no idle delivery run)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context
from sqlalchemy.engine import Engine

from tests.conftest import TOKEN_KEY
from tests.helpers import bind_fixture_numbers
from wa_core.events.push import disable_endpoint, set_endpoint
from wa_core.meta.crypto import TokenCipher
from wa_core.settings import Settings
from wa_pipelines.defs.events.delivery import event_delivery_sensor
from wa_pipelines.resources import AppDatabase


def _tick(instance: DagsterInstance, pg_url: str):
    with build_sensor_context(instance=instance, resources={"app_db": AppDatabase(database_url=pg_url)}) as context:
        return event_delivery_sensor(context)


def test_with_keep_alive_a_run_is_started_before_any_endpoint_exists(
    engine: Engine, settings: Settings, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_PUSH_KEEP_ALIVE", "true")
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    bind_fixture_numbers(engine)
    with DagsterInstance.ephemeral() as instance:
        assert isinstance(_tick(instance, pg_url), RunRequest)


def test_without_keep_alive_a_run_is_started_only_while_an_endpoint_is_enabled(
    engine: Engine, settings: Settings, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_PUSH_KEEP_ALIVE", "false")
    from wa_core.settings import get_settings

    get_settings.cache_clear()
    orgs = bind_fixture_numbers(engine)
    with DagsterInstance.ephemeral() as instance:
        skipped = _tick(instance, pg_url)
        assert isinstance(skipped, SkipReason) and "no organization has an enabled push endpoint" in skipped.skip_message
        with engine.begin() as conn:
            set_endpoint(conn, TokenCipher.from_hex(TOKEN_KEY), orgs["acme"], "https://crm.example/hooks")
        assert isinstance(_tick(instance, pg_url), RunRequest)
        with engine.begin() as conn:
            disable_endpoint(conn, orgs["acme"])
        assert isinstance(_tick(instance, pg_url), SkipReason)
