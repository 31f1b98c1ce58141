"""The media download wiring: ``pending_media_sensor`` starts ``download_media`` only while
media files are due and no download run is in flight; the job stores them."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunRequest, SkipReason, build_sensor_context
from sqlalchemy.engine import Engine

from tests.core.test_media import IMAGE_ID, acme, land_and_process, media, meta  # noqa: F401 (fixtures)
from tests.helpers import ACME_PHONE
from wa_core.settings import Settings
from wa_pipelines.defs.media.jobs import download_media_job, pending_media_sensor
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys


def _tick(pg_url: str, instance: DagsterInstance):
    with build_sensor_context(instance=instance, resources={"app_db": AppDatabase(database_url=pg_url)}) as context:
        return pending_media_sensor(context)


def test_sensor_starts_one_download_run_while_media_is_due(engine: Engine, settings: Settings, pg_url: str, acme) -> None:
    with DagsterInstance.ephemeral() as instance:
        assert isinstance(_tick(pg_url, instance), SkipReason)
        land_and_process(engine, settings, "messages_image.json")
        request = _tick(pg_url, instance)
        assert isinstance(request, RunRequest) and request.tags["wa/launched_by"] == "pending_media_sensor"
        run = DagsterRun(job_name=download_media_job.name, run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12, status=DagsterRunStatus.STARTED)
        instance.add_run(run)
        skipped = _tick(pg_url, instance)
        assert isinstance(skipped, SkipReason) and "in flight" in skipped.skip_message


def test_download_media_job_stores_the_due_files(engine: Engine, settings: Settings, pg_url: str, acme, meta) -> None:
    emulator, base_url, _ = meta
    land_and_process(engine, settings, "messages_image.json")
    emulator.media.add_media(IMAGE_ID, ACME_PHONE, content=b"\xff\xd8 a photo")
    result = download_media_job.execute_in_process(
        resources={"app_db": AppDatabase(database_url=pg_url), "meta_graph": MetaGraph(graph_api_base_url=base_url), "token_keys": TokenKeys()}
    )
    assert result.success and result.output_for_node("download_media_op") == {"expired": 0, "stored": 1}
    assert media(engine, IMAGE_ID).state == "stored"
    assert (settings.data_dir / "media" / media(engine, IMAGE_ID).storage_key).read_bytes() == b"\xff\xd8 a photo"
