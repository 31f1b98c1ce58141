"""The processing loop a Dagster run executes: claim, apply, record, repeat while work arrives.

One Dagster run costs seconds to start on a small machine, so a run does not stop after
one batch: it keeps claiming while rows keep landing, polling every
``PROCESSING_POLL_SECONDS`` when idle, and ends after ``PROCESSING_IDLE_EXIT_SECONDS``
without work or ``PROCESSING_RUN_MAX_SECONDS`` in all. This keeps landing-to-processed
latency under a steady stream to the poll interval plus the work itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from wa_core.settings import Settings

from .claim import ClaimedRow, claim_batch
from .dispatch import WebhookOutcome
from .engine import apply_batch

log = logging.getLogger("wa_core.processing")

#: how often a run whose remaining work is all over quota looks again (seconds)
THROTTLED_POLL_SECONDS = 0.5


@dataclass
class RunStats:
    """Counts for one processing run (shown as Dagster metadata)."""

    batches: int = 0
    webhooks: int = 0
    by_status: Counter = field(default_factory=Counter)
    items_received: int = 0
    items_processed: int = 0
    items_ignored: int = 0
    items_failed: int = 0
    items_dead: int = 0
    by_field: Counter = field(default_factory=Counter)
    by_error: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    #: claims that found work but every organization with work was at its quota
    throttled_claims: int = 0
    #: per organization lane (UUID or None): webhooks processed in this run
    by_organization: Counter = field(default_factory=Counter)

    def add(self, outcome: WebhookOutcome) -> None:
        """Fold one webhook's outcome into the run's counts."""
        self.webhooks += 1
        self.by_status[outcome.status] += 1
        self.items_received += outcome.items_received
        self.items_processed += outcome.items_processed
        self.items_ignored += outcome.items_ignored
        self.items_failed += outcome.items_failed
        self.items_dead += outcome.items_dead
        self.by_field.update(outcome.fields)
        self.by_organization[outcome.organization_id] += 1
        for kind, _, _ in outcome.errors:
            self.by_error[kind] += 1


def process_row(engine: Engine, row: ClaimedRow, settings: Settings, routes: dict | None = None) -> WebhookOutcome:
    """Apply one claimed row and store its outcome (:func:`~.engine.apply_batch` of one row;
    ``routes`` is accepted for compatibility and unused)."""
    return apply_batch(engine, [row], settings)[0]


class Batch(list):
    """Outcomes of one batch (a list of :class:`WebhookOutcome`), plus ``held_back``: claimable
    rows the claim left waiting because their organization was at its quota."""

    held_back: int = 0


def process_batch(engine: Engine, settings: Settings, limit: int | None = None) -> Batch:
    """Claim one batch within the per-organization quotas and apply it set-based
    (:func:`~.engine.apply_batch`); returns the outcomes (empty when nothing was claimable or
    every organization with work is at its quota)."""
    rows = claim_batch(
        engine,
        limit or settings.processing_batch_size,
        settings.processing_lease_seconds,
        org_max_in_flight=settings.processing_org_max_in_flight,
        org_per_minute=settings.processing_org_webhooks_per_minute,
    )
    batch = Batch(apply_batch(engine, rows, settings))
    batch.held_back = rows.held_back
    return batch


def run_processing(
    engine: Engine,
    settings: Settings,
    *,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    idle_exit_seconds: float | None = None,
    poll_seconds: float | None = None,
    on_batch: Callable[[RunStats], None] | None = None,
) -> RunStats:
    """Process batches until idle for ``idle_exit_seconds`` or ``max_seconds`` have passed.

    With ``idle_exit_seconds=0`` it drains what is claimable now and returns. Rows held back
    by an organization's quota are work, not idleness: the run waits for the quota window
    (polling every ``THROTTLED_POLL_SECONDS``, 0.5 s: a Postgres claim costs ~4 ms then) instead of exiting, until ``max_seconds``. Database
    errors propagate (the run fails; leased rows become claimable when the lease expires).
    """
    max_seconds = settings.processing_run_max_seconds if max_seconds is None else max_seconds
    idle_exit = settings.processing_idle_exit_seconds if idle_exit_seconds is None else idle_exit_seconds
    poll = settings.processing_poll_seconds if poll_seconds is None else poll_seconds
    stats = RunStats()
    started = last_work = time.monotonic()
    while time.monotonic() - started < max_seconds:
        outcomes = process_batch(engine, settings, batch_size)
        if outcomes:
            stats.batches += 1
            for outcome in outcomes:
                stats.add(outcome)
            last_work = time.monotonic()
            if on_batch:
                on_batch(stats)
            continue
        if outcomes.held_back:
            stats.throttled_claims += 1
            time.sleep(max(poll, THROTTLED_POLL_SECONDS))
            continue
        if time.monotonic() - last_work >= idle_exit:
            break
        time.sleep(poll)
    stats.seconds = time.monotonic() - started
    return stats
