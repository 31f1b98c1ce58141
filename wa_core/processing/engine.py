"""The processing engine: apply a claimed batch of webhook rows set-based.

:func:`apply_batch` does, for up to ``PROCESSING_BATCH_SIZE`` claimed rows:

1. **Parse** every row in Python (:func:`~.dispatch.parse_webhook`): each item becomes a
   planned record (contacts, messages, statuses, reactions, revisions) or fails alone on
   the spot (missing ids, wrong types, values the database would refuse; see
   :mod:`.records`). Only routing look-ups read the database, once per number a batch.
2. **Write** all planned items with a few multi-row statements per table
   (:mod:`.writers`), one transaction for the batch (a single webhook with more than
   :data:`~.dispatch.COMMIT_EVERY` items is written in transactions of that many items).
   Rare fields (``account_update``, history chunk progress and declines, contact syncs)
   keep their per-item SQL, each in a savepoint inside the same transaction.
3. **Settle** in a second, short transaction: ``current_status`` and revisions of every
   message the batch touched, recomputed from what is committed now (right under any
   interleaving of concurrent runs, see :mod:`.writers`), and every row's outcome in one
   statement guarded by claim ownership (:mod:`.outcomes`). A crash before this commit
   leaves the rows leased, claimable again once the lease expires, and the re-apply is
   idempotent.

**Isolation without savepoints on the happy path.** When a batch's write fails, it is rolled
back and split in halves, down to single rows; a single row's items are then applied one
by one, each in a savepoint (:func:`~.dispatch.apply_unit`). So a bad row only costs its
batch a few retries, never its neighbours' results, and a bad item never undoes its
siblings. Deadlocks and serialization failures are retried; other ``OperationalError`` (the
database is down) propagate and the run fails. A row whose outcome cannot be stored is dead
alone with a sanitised reason.

**Leases** are renewed while the batch is applied (:mod:`.lease`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wa_core.alerts import Alert, get_notifier
from wa_core.db.schema import utcnow
from wa_core.events.outbox import add_events, flush_events
from wa_core.explorer.keys import item_rows, write_explorer_rows
from wa_core.settings import Settings

from .claim import ClaimedRow
from .field_counts import record_fields
from .dispatch import COMMIT_EVERY, ParsedRow, Unit, WebhookOutcome, apply_unit, describe_error, parse_webhook, settle
from .lease import LeaseKeeper, renew_leases
from .outcomes import store_one_by_one, store_outcomes
from .records import MessagePlan, RevisionPlan, StatePlan, StatusPlan
from .relane import misrouted, release, released_outcome
from .writers import settle_messages, write_plans

log = logging.getLogger("wa_core.processing")
T = TypeVar("T")

#: items of several webhooks written in one transaction at most (a batch of 1000 ordinary
#: webhooks is one transaction)
TRANSACTION_ITEMS = 10_000
#: attempts of a transaction that hit a deadlock or a serialization failure
TRANSIENT_ATTEMPTS = 4
_TRANSIENT_SQLSTATES = {"40P01", "40001"}
#: status of an outcome that was not stored because another claim took the row meanwhile
LEASE_LOST = "lease_lost"


@dataclass(eq=False)
class _Entry:
    row: ClaimedRow
    parsed: ParsedRow


@dataclass(eq=False)
class _Group:
    """Items written in one transaction: whole webhooks, or a slice of one huge webhook."""

    entries: list[_Entry]
    units: list[tuple[_Entry, Unit]] = field(default_factory=list)


def _transient(exc: sa.exc.OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _retrying(conn: Connection, work: Callable[[], T]) -> T:
    """``work()`` then commit, retried after a rollback on a deadlock or serialization
    failure; other errors roll back and propagate."""
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            result = work()
            conn.commit()
            return result
        except sa.exc.OperationalError as exc:
            conn.rollback()
            if not _transient(exc) or attempt == TRANSIENT_ATTEMPTS:
                raise
            log.info("transaction retried after %s (attempt %d)", type(exc.orig).__name__, attempt)
            time.sleep(0.02 * attempt)
        except BaseException:
            conn.rollback()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _crashed(row: ClaimedRow) -> ParsedRow:
    # Claimed more often than allowed without ever finishing: every run that took it died or
    # hit its lease. A poison row must not take every later run down with it.
    parsed = ParsedRow(WebhookOutcome(row.id, items_received=1), preset=True)
    parsed.outcome.fail("crashed", f"processing never finished in {row.attempts - 1} attempts (run died or lease expired)", False)
    return parsed


def _groups(entries: Sequence[_Entry]) -> list[_Group]:
    groups: list[_Group] = []
    current = _Group([])
    for entry in entries:
        waiting = [(entry, u) for u in entry.parsed.units if u.result is None]
        if not waiting:
            continue
        if len(waiting) > COMMIT_EVERY:  # a huge webhook: its own transactions of COMMIT_EVERY items
            groups.extend(_Group([entry], waiting[i : i + COMMIT_EVERY]) for i in range(0, len(waiting), COMMIT_EVERY))
            continue
        current.entries.append(entry)
        current.units.extend(waiting)
        if len(current.units) >= TRANSACTION_ITEMS:
            groups.append(current)
            current = _Group([])
    if current.units:
        groups.append(current)
    return groups


class _Batch:
    def __init__(self, engine: Engine, conn: Connection, settings: Settings) -> None:
        self.engine, self.conn, self.settings = engine, conn, settings
        self.postgres = conn.dialect.name == "postgresql"

    def _renew(self, group: _Group) -> None:
        if not self.postgres:  # SQLite: no heartbeat thread, the lease is renewed with each commit
            renew_leases(self.conn, [e.row for e in group.entries], self.settings.processing_lease_seconds)

    def write(self, group: _Group) -> None:
        """Write ``group`` set-based; on failure split it (see the module docstring)."""
        conn = self.conn

        def set_based() -> None:
            write_plans(conn, [u.work for _, u in group.units if not callable(u.work)])
            for entry, unit in group.units:
                if callable(unit.work):  # a rare field: its own SQL, in a savepoint
                    apply_unit(conn, unit, entry.row.id)
                elif isinstance(unit.work, StatePlan):
                    add_events(conn, unit.work.announced(), entry.row.id)  # none when its gate's row did not move
                elif isinstance(unit.work, MessagePlan) and unit.work.events:
                    add_events(conn, unit.work.events, entry.row.id)
            self._renew(group)
            flush_events(conn)  # last: it takes the organizations' cursor locks until the commit

        try:
            _retrying(conn, set_based)
        except sa.exc.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the failing part
            self._split(group, exc)
            return
        for _, unit in group.units:
            if not callable(unit.work):
                unit.result = "processed"

    def _split(self, group: _Group, exc: Exception) -> None:
        _, reason, _ = describe_error(exc)
        if len(group.entries) > 1:
            log.warning("set-based write of %d webhooks failed (%s): splitting the batch", len(group.entries), reason)
            half = len(group.entries) // 2
            for part in (group.entries[:half], group.entries[half:]):
                members = {id(e) for e in part}
                self.write(_Group(part, [(e, u) for e, u in group.units if id(e) in members]))
            return
        log.warning("set-based write of webhook %s failed (%s): applying its items one by one", group.entries[0].row.id, reason)

        def per_item() -> None:
            for entry, unit in group.units:
                apply_unit(self.conn, unit, entry.row.id)
            self._renew(group)
            flush_events(self.conn)

        _retrying(self.conn, per_item)

    def _explorer(self, entries: Sequence[_Entry], stored: set[int], replaced: dict[int, WebhookOutcome]) -> None:
        """The explorer's search keys and item outcomes of the stored rows (:mod:`wa_core.explorer.keys`)."""
        keys, items, stale = [], [], []
        for entry in entries:
            row, parsed = entry.row, entry.parsed
            if row.id not in stored:
                continue
            keys.append((row.id, parsed.keys))
            if not row.first_attempt:
                stale.append(row.id)
            if row.id in replaced:
                items.extend(item_rows(row.id, row.attempts, (), replaced[row.id].errors, True))
            else:
                items.extend(item_rows(row.id, row.attempts, parsed.units, parsed.outcome.errors, parsed.preset))
        write_explorer_rows(self.conn, keys, items, stale)

    def finish(self, entries: Sequence[_Entry]) -> list[WebhookOutcome]:
        """Settle the touched messages and store every outcome (one transaction)."""
        status_keys: set[tuple[str, str]] = set()
        revision_keys: set[tuple[str, str]] = set()
        for entry in entries:
            for unit in entry.parsed.units:
                work = unit.work
                if unit.result != "processed":
                    continue
                if isinstance(work, RevisionPlan):
                    revision_keys.add((work.revision["phone_number_id"], work.revision["original_wamid"]))
                    continue
                if not isinstance(work, (MessagePlan, StatusPlan)):
                    continue
                key = (work.values["phone_number_id"], work.values["wamid"])
                if isinstance(work, StatusPlan):
                    status_keys.add(key)
                    continue
                if work.values["direction"] == "outbound":  # only outbound messages get statuses
                    status_keys.add(key)
                revision_keys.add(key)
        pairs = [(e.row, settle(e.parsed)) for e in entries]
        now = utcnow()

        def together() -> set[int]:
            settle_messages(self.conn, status_keys, revision_keys)
            stored = store_outcomes(self.conn, pairs, self.settings, now)
            self._explorer(entries, stored, {})
            flush_events(self.conn)  # the status and revision events, with the moves they announce
            return stored

        def one_by_one() -> set[int]:
            settle_messages(self.conn, status_keys, revision_keys)
            stored, replaced = store_one_by_one(self.conn, pairs, self.settings, now)
            for i, (row, _) in enumerate(pairs):
                if row.id in replaced:
                    pairs[i] = (row, replaced[row.id])
            savepoint = self.conn.begin_nested()
            try:  # the explorer's rows are a view of the outcomes: never the reason they are lost
                self._explorer(entries, stored, replaced)
                savepoint.commit()
            except sa.exc.OperationalError:
                savepoint.rollback()
                raise
            except Exception as exc:  # noqa: BLE001
                savepoint.rollback()
                log.warning("explorer keys and items of %d webhooks not stored (%s)", len(stored), describe_error(exc)[1])
            flush_events(self.conn)
            return stored

        try:
            stored = _retrying(self.conn, together)
        except sa.exc.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - find the row whose outcome cannot be stored
            log.warning("storing the outcomes of %d webhooks failed (%s): storing them one by one", len(pairs), describe_error(exc)[1])
            stored = _retrying(self.conn, one_by_one)
        outcomes = []
        for row, outcome in pairs:
            if row.id not in stored:
                log.warning("webhook %s: lease lost (claimed again since attempt %s); its outcome is left to that claim", row.id, row.attempts)
                outcome.status = LEASE_LOST
            outcomes.append(outcome)
        return outcomes


def _report(engine: Engine, row: ClaimedRow, outcome: WebhookOutcome, settings: Settings) -> None:
    kinds = ", ".join(sorted({kind for kind, _, _ in outcome.errors}))
    if outcome.status == "dead":
        # a dead letter waits for an operator (replay_dead_letters job or admin API): alert,
        # grouped per error kind so a burst of one cause is one alert, after the commit
        log.error("dead letter: webhook %s after attempt %s (%s); replay it with the replay_dead_letters job", row.id, row.attempts, kinds)
        get_notifier(settings, engine).notify(
            Alert(
                "dead_letter",
                kinds or "unknown",
                f"webhook {row.id} is a dead letter after {row.attempts} attempt(s) ({kinds}); "
                "replay it with the replay_dead_letters job once the cause is fixed",
                details={"webhook_log_id": row.id, "attempts": row.attempts, "error_kind": kinds},
                organization_id=outcome.organization_id,
            )
        )
    elif outcome.errors and outcome.status != LEASE_LOST:
        log.warning("webhook %s %s after attempt %s: %s", row.id, outcome.status, row.attempts, kinds)


def apply_batch(
    engine: Engine, rows: Sequence[ClaimedRow], settings: Settings, *, shard: int = 0, shards: int = 1
) -> list[WebhookOutcome]:
    """Apply claimed ``rows`` set-based and store their outcomes; one outcome per row, in order.

    Each outcome's ``status`` is ``processed``, ``failed`` (a retry is scheduled), ``dead``
    (alerted as a dead letter), ``lease_lost`` (another claim took the row meanwhile: its
    outcome is that claim's to store) or ``released``: a row claimed from the unrouted lane
    whose items belong to a paused organization or WABA, or to a lane of a shard other than
    ``shard`` of ``shards``, handed back unapplied to that lane (:mod:`.relane`). Item counts and error kinds are those of the per-item
    path (:func:`~.dispatch.apply_webhook`). Raises only when the database itself fails
    (``OperationalError``): the rows then stay leased and are claimed again after the lease.
    """
    if not rows:
        return []
    with LeaseKeeper(engine, rows, settings.processing_lease_seconds), engine.connect() as conn:
        batch = _Batch(engine, conn, settings)
        routes: dict[str, Any] = {}
        entries = []
        for row in rows:
            if row.lease_expired and row.attempts > settings.processing_max_attempts:
                entries.append(_Entry(row, _crashed(row)))
            else:
                entries.append(_Entry(row, parse_webhook(conn, row.id, row.body, row.received_at, routes)))
        released = _release_misrouted(conn, entries, shard, shards)
        entries = [e for e in entries if e.row.id not in released]
        for group in _groups(entries):
            batch.write(group)
        if conn.in_transaction():
            conn.rollback()  # only routing reads were left open
    with engine.connect() as conn:
        outcomes = _Batch(engine, conn, settings).finish(entries)
    record_fields(engine, settings, [o for o in outcomes if o.status != LEASE_LOST], utcnow())  # per-field counts, new fields alerted
    for entry, outcome in zip(entries, outcomes):
        _report(engine, entry.row, outcome, settings)
        if outcome.status != LEASE_LOST:
            _state_alerts(engine, entry, settings)
    if not released:
        return outcomes
    by_id = {o.webhook_log_id: o for o in outcomes}
    return [released[row.id] if row.id in released else by_id[row.id] for row in rows]


def _release_misrouted(conn: Connection, entries: list[_Entry], shard: int, shards: int) -> dict[int, WebhookOutcome]:
    """Hand back the unrouted rows that belong to a held or another shard's lane; their outcomes by id."""
    lanes = misrouted(conn, [(e.row, e.parsed) for e in entries], shard, shards)
    if not lanes:
        return {}
    rows = [e.row for e in entries if e.row.id in lanes]
    ids = _retrying(conn, lambda: release(conn, rows, lanes, utcnow()))
    for row in rows:
        log.info("webhook %s: claimed unrouted, belongs to organization %s (paused or another shard): handed back", row.id, lanes[row.id][0])
    # a row the claim no longer owns is left to its new claim, like a lost lease
    return {row.id: released_outcome(row, lanes[row.id][0]) if row.id in ids else _lost(row) for row in rows}


def _lost(row: ClaimedRow) -> WebhookOutcome:
    return WebhookOutcome(row.id, status=LEASE_LOST, received_at=row.received_at)


def _state_alerts(engine: Engine, entry: _Entry, settings: Settings) -> None:
    """The alerts the state fields' items planned (template paused, PIN reset…), raised once
    their writes have committed; the notifier deduplicates a redelivered webhook's."""
    alerts = [a for u in entry.parsed.units if u.result == "processed" and isinstance(u.work, StatePlan) for a in u.work.raised()]
    if alerts:
        notifier = get_notifier(settings, engine)
        for alert in alerts:
            notifier.notify(alert)


__all__ = ["LEASE_LOST", "TRANSACTION_ITEMS", "apply_batch"]
