"""Housekeeping of Dagster's own storage: finished runs older than ``DAGSTER_RUN_RETENTION_DAYS``.

Every processing run, dashboard refresh and onboarding follow-up leaves a run record, its
event log and its captured stdout/stderr in Dagster's storage (``DAGSTER_HOME``: SQLite files,
or the ``<name>_dagster`` Postgres database). Nothing in open-source Dagster removes them, so
``purge_dagster_runs`` does, daily (``purge_dagster_runs_daily``, 03:00 UTC):

- only runs that **finished** (``SUCCESS``, ``FAILURE``, ``CANCELED``) and were **created**
  before ``now - DAGSTER_RUN_RETENTION_DAYS`` (30); queued, starting, started or cancelling
  runs are never touched, whatever their age, nor the purge's own run;
- never the run holding an asset's latest materialisation (the asset catalog would otherwise
  forget that the asset was ever materialised);
- through the instance API (``get_run_ids`` with a :class:`~dagster.RunsFilter`,
  :meth:`~dagster.DagsterInstance.delete_run`, which removes the run and its event log), in
  pages, then the run's captured logs (``compute_log_manager.delete_logs``) and, on the
  embedded SQLite storage, the run's own event-log file, which ``delete_run`` empties but
  leaves on disk (128 KB each, measured with Dagster 1.13).

Schedule and sensor *ticks* are not runs: the daemon purges them itself after the
``retention:`` days of ``dagster.yaml``.
"""

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from dagster import (
    Config,
    DagsterInstance,
    DagsterRunStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunsFilter,
    op,
)
from pydantic import Field

from wa_core.settings import get_settings
from wa_pipelines.defs.factories import one_op_job, running_schedule

try:  # the embedded default's event log: one SQLite file per run (Dagster-internal class)
    from dagster._core.storage.event_log import SqliteEventLogStorage
except ImportError:  # pragma: no cover - a Dagster without it has no per-run files to remove
    SqliteEventLogStorage = None  # type: ignore[assignment,misc]

log = logging.getLogger("wa_pipelines.defs.operations.housekeeping")

#: the only states a run is deleted in: it ended and nothing will write to it again
FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
#: the longest age accepted (100 years): beyond it the cutoff overflows ``datetime``
MAX_RETENTION_DAYS = 36500
#: runs listed (and deleted) per storage query
DEFAULT_PAGE_SIZE = 100


@dataclass
class RunPurge:
    """What :func:`purge_finished_runs` did.

    ``cutoff``: runs created strictly before this instant (UTC) were candidates.
    ``deleted``: ids of the runs deleted (or that would be, with ``dry_run``).
    ``kept_latest_materialization``: old finished runs kept because they hold an asset's
    latest materialisation. ``kept_unfinished``: runs created before the cutoff that have not
    finished (never deleted; a high number means runs stuck in flight). ``failed``: ids whose
    deletion raised (logged; retried by the next purge). ``pages``: storage queries made.
    ``event_files_removed``: per-run SQLite event-log files removed (embedded default only).
    """

    cutoff: datetime
    dry_run: bool = False
    deleted: list[str] = field(default_factory=list)
    kept_latest_materialization: list[str] = field(default_factory=list)
    kept_unfinished: int = 0
    failed: list[str] = field(default_factory=list)
    pages: int = 0
    event_files_removed: int = 0


def _protected_run_ids(instance: DagsterInstance) -> set[str]:
    """Runs holding the latest materialisation of some asset (kept whatever their age)."""
    keep: set[str] = set()
    for key in instance.get_asset_keys():
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.run_id:
            keep.add(event.run_id)
    return keep


def _remove_run_files(instance: DagsterInstance, run_id: str, result: RunPurge) -> None:
    """Per-run files ``delete_run`` leaves behind: captured logs, and the SQLite event shard."""
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except Exception as exc:  # a log store that cannot delete must not stop the purge
        log.warning("captured logs of run %s not removed: %s", run_id, type(exc).__name__)
    storage = instance.event_log_storage
    if SqliteEventLogStorage is None or not isinstance(storage, SqliteEventLogStorage):
        return  # Postgres (and consolidated SQLite) keep events in shared tables: the rows are gone
    path = storage.path_for_shard(run_id)
    removed = False
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
            removed = removed or suffix == ""
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("event log file of run %s not removed: %s", run_id, type(exc).__name__)
    result.event_files_removed += int(removed)


def purge_finished_runs(
    instance: DagsterInstance,
    older_than_days: float,
    *,
    now: datetime | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    keep_run_ids: Iterable[str] = (),
    dry_run: bool = False,
    on_page: Callable[[int, int], None] | None = None,
) -> RunPurge:
    """Delete finished runs created more than ``older_than_days`` days before ``now``.

    ``now``: aware datetime (default: the current time, UTC). ``older_than_days`` must be > 0
    and at most :data:`MAX_RETENTION_DAYS` (:class:`ValueError` otherwise). Only ``SUCCESS``/``FAILURE``/``CANCELED`` runs are
    candidates; ``keep_run_ids`` (e.g. the calling run) and runs holding an asset's latest
    materialisation are skipped. Runs are listed ``page_size`` at a time (newest first) and
    each is deleted with :meth:`DagsterInstance.delete_run` (run, tags and event log), then
    its captured logs and, on SQLite storage, its event-log file. A deletion that raises is
    logged and counted in ``failed``; the purge goes on. ``dry_run`` deletes nothing and
    reports what would be deleted. ``on_page(page_number, deleted_so_far)`` is called after
    each page. Returns a :class:`RunPurge`.
    """
    if not 0 < older_than_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"older_than_days must be greater than 0 and at most {MAX_RETENTION_DAYS}")
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # Dagster compares creation times as naive UTC: give it UTC
    cutoff = (now - timedelta(days=older_than_days)).astimezone(timezone.utc)
    result = RunPurge(cutoff=cutoff, dry_run=dry_run)
    skip = set(keep_run_ids)
    protected = _protected_run_ids(instance)
    unfinished = [s for s in DagsterRunStatus if s not in FINISHED]
    result.kept_unfinished = instance.get_runs_count(RunsFilter(statuses=unfinished, created_before=cutoff))

    candidates = RunsFilter(statuses=list(FINISHED), created_before=cutoff)
    cursor: str | None = None  # the oldest run of the previous page that is still stored
    seen: set[str] = set()
    while True:
        page = instance.get_run_ids(candidates, cursor=cursor, limit=page_size)
        result.pages += 1
        if not page or seen.issuperset(page):  # nothing new (never loop on runs left in place)
            break
        seen.update(page)
        remaining: str | None = None
        for run_id in page:
            if run_id in skip or run_id in protected:
                if run_id in protected and run_id not in result.kept_latest_materialization:
                    result.kept_latest_materialization.append(run_id)
                remaining = run_id
                continue
            if dry_run:
                result.deleted.append(run_id)
                remaining = run_id
                continue
            try:
                instance.delete_run(run_id)
            except Exception as exc:
                log.warning("run %s not deleted: %s: %s", run_id, type(exc).__name__, exc)
                result.failed.append(run_id)
                remaining = run_id
                continue
            result.deleted.append(run_id)
            _remove_run_files(instance, run_id, result)
        if on_page:
            on_page(result.pages, len(result.deleted))
        # Deleted runs are gone from the next query; runs left in place are passed with a
        # cursor (a cursor must be a stored run: Dagster resolves it to the run's row id).
        if remaining is not None:
            cursor = remaining
        if len(page) < page_size:
            break
    return result


class PurgeDagsterRunsConfig(Config):
    """Manual overrides for one purge run (the schedule uses the defaults)."""

    older_than_days: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RETENTION_DAYS,
        description="delete finished runs created more than this many days ago (at most 36500); default DAGSTER_RUN_RETENTION_DAYS",
    )
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=1000, description="runs listed and deleted per storage query")
    dry_run: bool = Field(default=False, description="count what would be deleted, delete nothing")


@op(description="Delete finished Dagster runs (and their event logs) older than DAGSTER_RUN_RETENTION_DAYS.")
def purge_dagster_runs_op(context: OpExecutionContext, config: PurgeDagsterRunsConfig) -> int:
    """Purge through ``context.instance``; reports counts as output metadata; returns the count."""
    days = config.older_than_days or get_settings().dagster_run_retention_days

    def progress(page: int, deleted: int) -> None:
        if page % 10 == 0:
            context.log.info(f"page {page}: {deleted} runs deleted so far")

    result = purge_finished_runs(
        context.instance,
        days,
        page_size=config.page_size,
        keep_run_ids=[context.run_id],
        dry_run=config.dry_run,
        on_page=progress,
    )
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"{verb} {len(result.deleted)} finished runs created before {result.cutoff.isoformat()} "
        f"({days:g} days); kept {len(result.kept_latest_materialization)} holding an asset's latest "
        f"materialisation and {result.kept_unfinished} unfinished; {len(result.failed)} failed"
    )
    if result.kept_unfinished:
        context.log.warning(f"{result.kept_unfinished} runs older than {days:g} days have not finished (stuck in flight?)")
    context.add_output_metadata(
        {
            "deleted": 0 if config.dry_run else len(result.deleted),
            "selected": len(result.deleted),
            "dry_run": config.dry_run,
            "retention_days": float(days),
            "cutoff": result.cutoff.isoformat(),
            "kept_latest_materialization": len(result.kept_latest_materialization),
            "kept_unfinished": result.kept_unfinished,
            "failed": len(result.failed),
            "pages": result.pages,
            "event_files_removed": result.event_files_removed,
        }
    )
    if result.failed:
        raise Failure(
            description=f"{len(result.failed)} runs could not be deleted (see the warnings above); the next purge retries them",
            metadata={"deleted": len(result.deleted), "failed_run_ids": MetadataValue.json(result.failed[:100])},
        )
    return 0 if config.dry_run else len(result.deleted)


purge_dagster_runs_job = one_op_job(
    "purge_dagster_runs",
    purge_dagster_runs_op,
    "Delete finished Dagster runs older than DAGSTER_RUN_RETENTION_DAYS (config may override the age).",
)

purge_dagster_runs_schedule = running_schedule(
    "purge_dagster_runs_daily",
    purge_dagster_runs_job,
    "0 3 * * *",
    "UTC",
    description="Daily at 03:00 UTC: delete finished Dagster runs older than DAGSTER_RUN_RETENTION_DAYS.",
)

HOUSEKEEPING_JOBS: list = [purge_dagster_runs_job]
HOUSEKEEPING_SCHEDULES: list = [purge_dagster_runs_schedule]
