"""The processing job. It uses the in-process executor (a run starts in seconds on a small
machine instead of one subprocess per step)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from wa_pipelines.defs.ingest.assets import apply_landed_webhooks

#: Runs carrying this tag are limited to one at a time by dagster.yaml's run queue.
PROCESSING_TAG = {"wa/queue": "processing"}

process_webhooks_job = define_asset_job(
    "process_webhooks",
    selection=AssetSelection.assets(apply_landed_webhooks),
    executor_def=in_process_executor,
    tags=PROCESSING_TAG,
    description="Claim landed webhooks and apply them; keeps running while webhooks keep arriving.",
)
