"""Inbound media downloads (Meta, WhatsApp Cloud API "Media"): the ``download_media`` job and its sensor.

``pending_media_sensor`` looks every 5 s for ``whatsapp_media`` rows that are due and, when
no ``download_media`` run is in flight, starts one; the run downloads until nothing is due
(``wa_core.media.download.download_due``) and records its counts per outcome. Retries wait
in the rows (``next_attempt_at``), so a later tick starts the run that retries them.
"""

from dagster import DefaultSensorStatus, OpExecutionContext, RunRequest, RunsFilter, SensorEvaluationContext, SkipReason, op, sensor

from wa_pipelines.defs.factories import one_op_job
from wa_pipelines.defs.ingest.sensors import IN_FLIGHT
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys

#: the run queue of media downloads: one run at a time (``dagster/dagster.yaml``)
MEDIA_QUEUE = "media"


@op(description="Download every due inbound media file through the Media API into storage, verified (sha256, size).")
def download_media_op(context: OpExecutionContext, app_db: AppDatabase, meta_graph: MetaGraph, token_keys: TokenKeys) -> dict:
    from wa_core.media.download import download_due
    from wa_core.media.storage import MediaStorage

    settings = app_db.settings
    storage = MediaStorage.from_settings(settings)
    with meta_graph.client() as graph:
        counts = download_due(app_db.get_engine(), settings, graph=graph, storage=storage, cipher=token_keys.cipher())
    context.log.info(f"media downloads: {dict(counts)} (storage {storage.url})")
    context.add_output_metadata({state: int(n) for state, n in counts.items()})
    return dict(counts)


download_media_job = one_op_job(
    "download_media", download_media_op, "Download due inbound media (images, audio, video, documents, stickers) to storage.", queue=MEDIA_QUEUE
)


@sensor(
    job=download_media_job,
    minimum_interval_seconds=1,  # the daemon ticks every 5 s at best
    default_status=DefaultSensorStatus.RUNNING,
    description="Start download_media when media files are due and no download run is in flight.",
)
def pending_media_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
    """One ``download_media`` run at a time, started while due media rows exist."""
    from wa_core.media.download import due_count

    in_flight = context.instance.get_run_records(RunsFilter(job_name=download_media_job.name, statuses=IN_FLIGHT), limit=1)
    if in_flight:
        return SkipReason(f"download_media run {in_flight[0].dagster_run.run_id} is in flight")
    with app_db.get_engine().connect() as conn:
        due = due_count(conn)
    if not due:
        return SkipReason("no media file due")
    return RunRequest(tags={"wa/launched_by": "pending_media_sensor"}, run_config={})
