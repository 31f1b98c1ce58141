"""The processing loop a Dagster run executes: claim, apply, record, repeat while work arrives.

One Dagster run costs seconds to start on a small machine, so nothing on the latency path
starts one: a run per shard stays alive (``run_processing``), claims while rows keep landing
and, when idle, sleeps until the receiver's ``NOTIFY`` (or a database change on SQLite) wakes
it, claiming anyway every ``PROCESSING_LISTEN_POLL_SECONDS`` (see :mod:`.wake`). It stops
claiming after ``PROCESSING_RUN_MAX_SECONDS`` (its rollover deadline) or earlier when its
``should_stop`` says so: the Dagster asset answers yes once the shard's next run is up, which
the sensor starts ``PROCESSING_ROLLOVER_LEAD_SECONDS`` before the deadline.
``PROCESSING_IDLE_EXIT_SECONDS``, when set, ends a run after that long idle.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from wa_core.gc_tuning import batch_friendly_gc
from wa_core.settings import Settings

from .claim import ClaimedRow, claim_batch
from .dispatch import WebhookOutcome
from .engine import apply_batch
from .wake import TIMEOUT, Waker, make_waker

log = logging.getLogger("wa_core.processing")

#: how often a run whose remaining work is all over quota looks again (seconds)
THROTTLED_POLL_SECONDS = 0.5
#: ``should_stop`` is asked at most, and (while waiting) at least, this often (seconds)
STOP_CHECK_SECONDS = 2.0


@dataclass
class RunStats:
    """Counts for one processing run (shown as Dagster metadata). Times are seconds."""

    shard: int = 0
    shards: int = 1
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
    #: time spent claiming and applying batches that had rows (the rest of ``seconds`` is idle)
    busy_seconds: float = 0.0
    #: why each idle wait ended: ``notified`` (NOTIFY or a database change), ``lost`` (the
    #: listener's connection dropped), ``reconnected`` (it came back), ``timeout`` (the fallback poll)
    wakes: Counter = field(default_factory=Counter)
    #: why the run ended: ``drained`` (idle exit 0), ``idle``, ``deadline`` (rollover time) or
    #: ``stopped`` (``should_stop``: its successor is up)
    ended: str = ""

    @property
    def items_per_second(self) -> float:
        """Items received per busy second (0.0 before any batch)."""
        return self.items_received / self.busy_seconds if self.busy_seconds else 0.0

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


def process_row(engine: Engine, row: ClaimedRow, settings: Settings) -> WebhookOutcome:
    """Apply one claimed row and store its outcome (:func:`~.engine.apply_batch` of one row)."""
    return apply_batch(engine, [row], settings)[0]


class Batch(list):
    """Outcomes of one batch (a list of :class:`WebhookOutcome`), plus ``held_back``: claimable
    rows the claim left waiting because their organization was at its quota."""

    held_back: int = 0


def process_batch(
    engine: Engine, settings: Settings, limit: int | None = None, *, shard: int = 0, shards: int | None = None
) -> Batch:
    """Claim one batch of shard ``shard`` of ``shards`` (default ``PROCESSING_SHARDS``), fairly
    over its lanes and within any caps, and apply it set-based (:func:`~.engine.apply_batch`);
    returns the outcomes (empty when nothing was claimable or every lane with work is at a cap)."""
    rows = claim_batch(
        engine,
        limit or settings.processing_batch_size,
        settings.processing_lease_seconds,
        org_max_in_flight=settings.processing_org_max_in_flight,
        org_per_minute=settings.processing_org_webhooks_per_minute,
        shard=shard,
        shards=shards or settings.processing_shards,
    )
    batch = Batch(apply_batch(engine, rows, settings, shard=shard, shards=shards or settings.processing_shards))
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
    shard: int = 0,
    shards: int = 1,
    waker: Waker | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunStats:
    """Process batches of shard ``shard`` of ``shards`` until ``max_seconds`` have passed
    (default ``PROCESSING_RUN_MAX_SECONDS``), ``idle_exit_seconds`` passed without work, or
    ``should_stop()`` says so.

    ``idle_exit_seconds``: ``None`` takes ``PROCESSING_IDLE_EXIT_SECONDS``, whose default (unset)
    keeps the run alive while idle; ``0`` drains what is claimable now and returns (manual runs,
    the CLI's default, tests). While idle the run waits on ``waker`` (default
    :func:`~.wake.make_waker`: LISTEN on Postgres, ``data_version`` on SQLite; opened at the
    first idle moment and closed on return) and claims on a notification or every
    ``waker.idle_seconds``; ``poll_seconds`` overrides ``PROCESSING_POLL_SECONDS``.
    ``should_stop`` is asked between batches and while waiting, every ``STOP_CHECK_SECONDS``
    (2 s): the Dagster asset uses it to hand over to the shard's next run.

    Rows held back by an organization's quota are work, not idleness: the run looks again
    every ``THROTTLED_POLL_SECONDS`` (0.5 s) until ``max_seconds``. Database errors propagate
    (the run fails; leased rows become claimable when the lease expires).
    """
    max_seconds = settings.processing_run_max_seconds if max_seconds is None else max_seconds
    idle_exit = settings.processing_idle_exit_seconds if idle_exit_seconds is None else idle_exit_seconds
    poll = settings.processing_poll_seconds if poll_seconds is None else poll_seconds
    limit = batch_size or settings.processing_batch_size
    stats = RunStats(shard=shard, shards=shards)
    started = last_work = last_stop_check = time.monotonic()
    deadline = started + max_seconds
    own_waker = waker is None

    def stop_now() -> bool:
        nonlocal last_stop_check
        last_stop_check = time.monotonic()
        return should_stop is not None and should_stop()

    with batch_friendly_gc():
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    stats.ended = "deadline"
                    break
                if should_stop is not None and now - last_stop_check >= STOP_CHECK_SECONDS and stop_now():
                    stats.ended = "stopped"
                    break
                if waker is not None:
                    waker.drain()  # this claim sees what was announced so far
                batch = process_batch(engine, settings, limit, shard=shard, shards=shards)
                if batch:
                    stats.batches += 1
                    for outcome in batch:
                        stats.add(outcome)
                    last_work = time.monotonic()
                    stats.busy_seconds += last_work - now
                    if on_batch:
                        on_batch(stats)
                    if not (waker is not None and waker.notifying and len(batch) < limit and not batch.held_back):
                        continue
                    # everything claimable was taken: rows landed since then have announced themselves
                elif batch.held_back:
                    stats.throttled_claims += 1
                    time.sleep(max(poll, THROTTLED_POLL_SECONDS))
                    continue
                elif idle_exit is not None and time.monotonic() - last_work >= idle_exit:
                    stats.ended = "drained" if idle_exit == 0 else "idle"
                    break
                if waker is None:
                    waker = make_waker(settings, shard=shard, poll_seconds=poll)
                    waker.ready()
                    continue  # claim once more now that it listens: nothing lands unannounced
                if _wait(waker, stats, deadline, idle_exit, last_work, should_stop, stop_now):
                    stats.ended = "stopped"
                    break
        finally:
            if own_waker and waker is not None:
                waker.close()
    stats.seconds = time.monotonic() - started
    return stats


def _wait(waker: Waker, stats: RunStats, deadline: float, idle_exit: float | None, last_work: float,
          should_stop: Callable[[], bool] | None, stop_now: Callable[[], bool]) -> bool:
    """Wait until something was announced, the fallback poll is due, the deadline or the idle
    exit is reached; True if ``should_stop`` said stop meanwhile. Checks of ``should_stop``
    (every ``STOP_CHECK_SECONDS``) do not cause claims."""
    poll_at = time.monotonic() + waker.idle_seconds
    limit = min(poll_at, deadline) if idle_exit is None else min(poll_at, deadline, last_work + idle_exit)
    while True:
        now = time.monotonic()
        step = limit - now
        if should_stop is not None:
            step = min(step, STOP_CHECK_SECONDS)
        wake = waker.wait(max(0.0, step))
        if wake != TIMEOUT:
            stats.wakes[wake] += 1
            return False
        if time.monotonic() >= limit:
            stats.wakes[TIMEOUT] += 1
            return False
        if stop_now():
            return True
