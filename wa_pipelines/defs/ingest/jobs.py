"""The processing job. It uses the in-process executor (a run starts in seconds on a small
machine instead of one subprocess per step)."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from wa_pipelines.defs.ingest.assets import SHARD_TAG, SHARDS_TAG, apply_landed_webhooks

__all__ = ["PROCESSING_TAG", "SHARD_TAG", "SHARDS_TAG", "process_webhooks_job"]

#: Every processing run carries this tag (dagster.yaml caps the processing runs in flight).
PROCESSING_TAG = {"wa/queue": "processing"}

process_webhooks_job = define_asset_job(
    "process_webhooks",
    selection=AssetSelection.assets(apply_landed_webhooks),
    executor_def=in_process_executor,
    tags=PROCESSING_TAG,
    description="Claim landed webhooks of one shard and apply them; the sensor keeps one run alive per shard.",
)
