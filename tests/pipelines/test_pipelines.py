"""Dagster definitions: they load, the sensor decides correctly, the job and assets run in-process."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SkipReason,
    build_sensor_context,
    materialize,
)
from sqlalchemy.engine import Engine

from tests.conftest import fixture_bytes
from tests.helpers import bind_fixture_numbers, land, rows
from wa_pipelines.definitions import defs
from wa_pipelines.defs.dashboards.assets import org_whatsapp_status
from wa_pipelines.resources import AppDatabase
from wa_pipelines.defs.ingest.sensors import pending_webhooks_sensor
from wa_core.db.schema import whatsapp_messages, whatsapp_webhook_logs
from wa_core.settings import Settings, get_settings


def test_definitions_load_with_everything_running_by_default() -> None:
    repo = defs.get_repository_def()
    repo.load_all_definitions()
    assert {"process_webhooks", "refresh_dashboards"} <= {j.name for j in repo.get_all_jobs()}
    for sensor in repo.sensor_defs:
        assert sensor.default_status == DefaultSensorStatus.RUNNING, sensor.name
    for schedule in repo.schedule_defs:
        assert schedule.default_status == DefaultScheduleStatus.RUNNING, schedule.name
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"whatsapp_webhook_logs", "whatsapp_messages", "org_whatsapp_status"} <= keys
    # lineage: raw webhooks → processed tables → dashboard
    from dagster import AssetKey

    assert AssetKey("whatsapp_webhook_logs") in graph.get(AssetKey("whatsapp_messages")).parent_keys
    assert AssetKey("whatsapp_messages") in graph.get(AssetKey("org_whatsapp_status")).parent_keys


def _tick(pg_url: str, instance: DagsterInstance):
    with build_sensor_context(instance=instance, resources={"app_db": AppDatabase(database_url=pg_url)}) as context:
        return pending_webhooks_sensor(context)


def _env(monkeypatch, **values: str) -> Settings:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return get_settings()


def _processing_run(instance: DagsterInstance, shard: int, status=DagsterRunStatus.STARTED, age: float = 0.0) -> DagsterRun:
    """A process_webhooks run of ``shard`` created ``age`` seconds ago (the run storage's API for
    importing past runs: no clock is frozen)."""
    run = DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), status=status, tags={"wa/shard": str(shard), "wa/shards": "2"})
    return instance.run_storage.add_historical_run(run, datetime.now(timezone.utc) - timedelta(seconds=age))


def _by_shard(result) -> dict[int, RunRequest]:
    assert isinstance(result, list) and all(isinstance(r, RunRequest) for r in result), result
    return {int(r.tags["wa/shard"]): r for r in result}


def test_sensor_keeps_one_run_alive_per_shard(engine: Engine, pg_url: str, monkeypatch) -> None:
    settings = _env(monkeypatch, PROCESSING_SHARDS="2")
    assert settings.processing_idle_exit_seconds is None  # the default: runs stay alive while idle
    with DagsterInstance.ephemeral() as instance:
        # nothing has landed, yet each shard gets its run: a run is never started on the latency path
        requests = _by_shard(_tick(pg_url, instance))
        assert set(requests) == {0, 1}
        for shard, request in requests.items():
            config = request.run_config["ops"]["apply_landed_webhooks"]["config"]
            assert (config["shard"], config["shards"]) == (shard, 2)
            assert config["idle_exit_seconds"] is None and config["max_seconds"] == settings.processing_run_max_seconds
            assert request.tags["wa/shards"] == "2" and request.tags["wa/reason"] == "start"
        # shard 0's run is alive: only shard 1 is requested again (its request never became a run)
        _processing_run(instance, 0)
        assert set(_by_shard(_tick(pg_url, instance))) == {1}
        # a run not started yet counts as alive too: nothing to request
        _processing_run(instance, 1, DagsterRunStatus.NOT_STARTED)
        skipped = _tick(pg_url, instance)
        assert isinstance(skipped, SkipReason) and "in flight" in skipped.skip_message


def test_sensor_requests_the_successor_when_a_run_nears_its_rollover(engine: Engine, pg_url: str, monkeypatch) -> None:
    settings = _env(monkeypatch, PROCESSING_SHARDS="2")
    with DagsterInstance.ephemeral() as instance:
        young = settings.processing_run_max_seconds - settings.processing_rollover_lead_seconds - 30
        fresh = {shard: _processing_run(instance, shard, age=young) for shard in (0, 1)}
        assert isinstance(_tick(pg_url, instance), SkipReason)  # not yet within the lead
        for run in fresh.values():
            instance.report_run_canceled(run)
        near = settings.processing_run_max_seconds - settings.processing_rollover_lead_seconds + 1
        old = {shard: _processing_run(instance, shard, age=near) for shard in (0, 1)}
        requests = _by_shard(_tick(pg_url, instance))
        assert set(requests) == {0, 1}
        for shard, request in requests.items():
            assert request.tags["wa/successor_of"] == old[shard].run_id and request.tags["wa/reason"] == "rollover"
            assert request.run_key == f"shard-{shard}-after-{old[shard].run_id}"  # once per predecessor
        # shard 0's successor is starting, shard 1's already started: both shards are covered
        _processing_run(instance, 0, DagsterRunStatus.NOT_STARTED)
        _processing_run(instance, 1)
        assert isinstance(_tick(pg_url, instance), SkipReason)
        # the old runs are not failed: they hand over by themselves
        assert {instance.get_run_by_id(r.run_id).status for r in old.values()} == {DagsterRunStatus.STARTED}


def test_sensor_fails_a_processing_run_whose_process_died(engine: Engine, pg_url: str, monkeypatch) -> None:
    settings = _env(monkeypatch, PROCESSING_SHARDS="2")
    with DagsterInstance.ephemeral() as instance:
        dead = _processing_run(instance, 1, age=settings.processing_run_max_seconds + settings.processing_lease_seconds + 5)
        live = _processing_run(instance, 0, age=settings.processing_run_max_seconds - settings.processing_rollover_lead_seconds - 30)
        requests = _by_shard(_tick(pg_url, instance))
        assert set(requests) == {1} and requests[1].tags["wa/reason"] == "start"  # shard 1 gets a new run
        assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED


def test_sensor_with_an_idle_exit_starts_runs_only_for_a_backlog(engine: Engine, pg_url: str, monkeypatch) -> None:
    _env(monkeypatch, PROCESSING_IDLE_EXIT_SECONDS="10")  # runs end when idle (the demo's choice)
    with DagsterInstance.ephemeral() as instance:
        assert isinstance(_tick(pg_url, instance), SkipReason)
        land(engine, fixture_bytes("messages_text.json"))
        [request] = _tick(pg_url, instance)
        config = request.run_config["ops"]["apply_landed_webhooks"]["config"]
        assert config["idle_exit_seconds"] == 10 and (config["shard"], config["shards"]) == (0, 1)
        _processing_run(instance, 0)
        skipped = _tick(pg_url, instance)
        assert isinstance(skipped, SkipReason) and "in flight" in skipped.skip_message


def test_process_webhooks_job_runs_in_process_and_reports_counts(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    for name in ("messages_text.json", "statuses_failed.json", "not_json.txt", "account_update_partner_added.json"):
        land(engine, fixture_bytes(name))
    job = defs.resolve_job_def("process_webhooks")
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        mats = result.asset_materializations_for_node("apply_landed_webhooks")
        by_key = {m.asset_key.to_user_string(): m.metadata for m in mats}
        assert set(by_key) == {"whatsapp_messages", "whatsapp_message_statuses", "whatsapp_contacts", "whatsapp_connections",
                               "whatsapp_templates", "whatsapp_number_health", "whatsapp_waba_health", "whatsapp_account_alerts"}
        meta = by_key["whatsapp_messages"]
        assert meta["webhooks"].value == 4
        assert meta["webhooks_processed"].value == 3 and meta["webhooks_dead"].value == 1
        assert meta["written_this_run"].value is True
        # per-organization view: the not-JSON body is the only webhook without an organization
        assert meta["processed_by_organization"].value == {"acme": 3, "unrouted": 1}
        assert meta["backlog_claimable"].value == 0 and meta["throttled_claims"].value == 0
        # a manual run drains and ends; its pace is recorded
        assert (meta["shard"].value, meta["shards"].value, meta["ended"].value) == (0, 1, "drained")
        assert meta["batches"].value >= 1 and meta["items_per_second"].value > 0
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed", "dead"}
    assert len(rows(engine, whatsapp_messages)) == 1


def test_a_long_lived_run_hands_over_to_its_successor(engine: Engine, settings: Settings, monkeypatch) -> None:
    """A sensor-style run (stay alive, shard 1 of 2) processes what lands while it is alive and
    stops claiming once a newer STARTED run of its shard exists (here the handover window opens
    at once; in production PROCESSING_ROLLOVER_LEAD_SECONDS before its deadline)."""
    import threading
    import time

    _env(monkeypatch, PROCESSING_RUN_MAX_SECONDS="3600", PROCESSING_ROLLOVER_LEAD_SECONDS="3599")
    bind_fixture_numbers(engine)
    import sqlalchemy as sa

    from wa_core.backlog import lane_shard
    from wa_core.db.schema import organizations

    with engine.connect() as conn:  # the shard that owns acme's lane (the webhook landed below)
        acme = conn.execute(sa.select(organizations.c.id).where(organizations.c.external_id == "acme")).scalar_one()
    shard = lane_shard(acme, 2)
    job = defs.resolve_job_def("process_webhooks")
    config = {"shard": shard, "shards": 2, "idle_exit_seconds": None, "max_seconds": 300}
    outcome: dict = {}
    with DagsterInstance.ephemeral() as instance:

        def execute() -> None:
            outcome["result"] = job.execute_in_process(
                instance=instance, run_config={"ops": {"apply_landed_webhooks": {"config": config}}}, tags={"wa/shard": str(shard)}
            )

        worker = threading.Thread(target=execute, daemon=True)
        worker.start()

        def wait_for(condition, what: str) -> None:
            deadline = time.monotonic() + 120
            while not condition():
                assert time.monotonic() < deadline, f"never happened: {what}"
                assert worker.is_alive() or condition(), f"the run ended before: {what}"
                time.sleep(0.1)

        wait_for(lambda: instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.STARTED])) == 1, "the run started")
        row_id = land(engine, fixture_bytes("messages_text.json"))
        status = lambda: next(r.status for r in rows(engine, whatsapp_webhook_logs) if r.id == row_id)  # noqa: E731
        wait_for(lambda: status() == "processed", "the run processed a webhook landed while it was alive")
        assert worker.is_alive()  # idle, yet alive
        _processing_run(instance, 1 - shard)  # another shard's run: no reason to stop
        _processing_run(instance, shard)  # the successor
        worker.join(timeout=120)
        assert not worker.is_alive(), "the run did not hand over"
        result = outcome["result"]
        assert result.success
        [meta, *_] = [m.metadata for m in result.asset_materializations_for_node("apply_landed_webhooks")]
        assert (meta["shard"].value, meta["shards"].value, meta["ended"].value) == (shard, 2, "stopped")
        assert meta["webhooks"].value == 1 and meta["batches"].value == 1


def test_org_whatsapp_status_figures(engine: Engine, settings: Settings, pg_url: str) -> None:
    import json

    bind_fixture_numbers(engine)  # acme awaiting confirmation, globex active
    for name in ("messages_text.json", "messages_image.json", "account_update_partner_added.json", "messages_unknown_phone_number.json"):
        land(engine, fixture_bytes(name))
    bad = json.loads(fixture_bytes("messages_text.json"))
    bad["entry"][0]["changes"][0]["value"]["messages"][0].pop("id")  # a dead item for acme
    land(engine, json.dumps(bad).encode())
    from wa_core.processing.runner import run_processing

    run_processing(engine, settings, idle_exit_seconds=0)
    result = materialize([org_whatsapp_status], resources={"app_db": AppDatabase(database_url=pg_url)})
    assert result.success
    [mat] = result.asset_materializations_for_node("org_whatsapp_status")
    table = {r["organization"]: r for r in mat.metadata["rows"].value}
    acme = table["Acme Store"]
    assert acme["organization_external_id"] == "acme"
    assert (acme["active_connections"], acme["messages_in_24h"], acme["webhooks_processed_24h"]) == (1, 2, 3)  # PARTNER_ADDED confirmed it
    assert (acme["webhooks_failed_24h"], acme["webhooks_dead_24h"]) == (0, 1)  # the item without an id is dead
    assert table["Globex Ltd"]["active_connections"] == 1 and table["Globex Ltd"]["messages_in_24h"] == 0
    assert mat.metadata["messages_in_24h"].value == 2
    assert mat.metadata["webhooks_unrouted_24h"].value == 1  # the unknown number, retried
    assert "| Acme Store | 0 | 1 | 1 / 1 | 2 | 0 | 3 | 0 | 1 | 0 / 0 |" in mat.metadata["by_organization"].value


def test_dashboards_are_refreshed_after_a_processing_run_only_if_it_applied_webhooks(engine: Engine, settings: Settings) -> None:
    """Idle shards roll over every PROCESSING_RUN_MAX_SECONDS: those runs must not start a
    dashboard refresh each (measured: half the idle stack's CPU); a run that applied webhooks does."""
    from dagster import build_run_status_sensor_context

    from wa_pipelines.defs.dashboards.sensors import dashboards_after_processing

    job = defs.resolve_job_def("process_webhooks")
    with DagsterInstance.ephemeral() as instance:

        def tick_after(result):
            run = instance.get_run_by_id(result.run_id)
            event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
            context = build_run_status_sensor_context("dashboards_after_processing", event, instance, run)
            return dashboards_after_processing(context)

        idle = job.execute_in_process(instance=instance)  # nothing landed
        assert isinstance(tick_after(idle), SkipReason)
        land(engine, fixture_bytes("messages_text.json"))
        busy = job.execute_in_process(instance=instance)
        assert isinstance(tick_after(busy), RunRequest)
