"""Dagster definitions: they load, the sensor decides correctly, the job and assets run in-process."""

from __future__ import annotations

import uuid

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
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
from wa_core.settings import Settings


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


def test_sensor_requests_a_run_only_with_a_backlog_and_none_in_flight(engine: Engine, settings: Settings, pg_url: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        assert isinstance(_tick(pg_url, instance), SkipReason)
        land(engine, fixture_bytes("messages_text.json"))
        result = _tick(pg_url, instance)
        assert isinstance(result, RunRequest)
        config = result.run_config["ops"]["apply_landed_webhooks"]["config"]
        assert config["idle_exit_seconds"] == settings.processing_idle_exit_seconds  # sensor runs linger
        instance.add_run(DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED))
        skipped = _tick(pg_url, instance)
        assert isinstance(skipped, SkipReason) and "in flight" in skipped.skip_message


def test_sensor_fails_a_processing_run_whose_process_died(engine: Engine, settings: Settings, pg_url: str, monkeypatch) -> None:
    land(engine, fixture_bytes("messages_text.json"))
    with DagsterInstance.ephemeral() as instance:
        run = instance.add_run(DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED))
        assert isinstance(_tick(pg_url, instance), SkipReason)
        import wa_pipelines.defs.ingest.sensors as sensors

        later = sensors.time.time() + settings.processing_run_max_seconds + settings.processing_lease_seconds + 5
        monkeypatch.setattr(sensors.time, "time", lambda: later)
        assert isinstance(_tick(pg_url, instance), RunRequest)
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


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
        assert set(by_key) == {"whatsapp_messages", "whatsapp_message_statuses", "whatsapp_contacts", "whatsapp_connections"}
        meta = by_key["whatsapp_messages"]
        assert meta["webhooks"].value == 4
        assert meta["webhooks_processed"].value == 3 and meta["webhooks_dead"].value == 1
        assert meta["written_this_run"].value is True
        # per-organization view: the not-JSON body is the only webhook without an organization
        assert meta["processed_by_organization"].value == {"acme": 3, "unrouted": 1}
        assert meta["backlog_claimable"].value == 0 and meta["throttled_claims"].value == 0
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed", "dead"}
    assert len(rows(engine, whatsapp_messages)) == 1


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
