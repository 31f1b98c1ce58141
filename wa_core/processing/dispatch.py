"""Walk one landed webhook into items, apply items one by one, and compute the outcome.

:func:`parse_webhook` walks every entry × change × item into :class:`Unit` items (rows
planned in Python, see :mod:`.records`); the set-based engine (:mod:`.engine`) writes the
planned items of a whole batch at once, and uses :func:`apply_unit` (one savepoint per item,
so a failing item never undoes or blocks its siblings) only for rare fields and for the part
of a batch that failed. :func:`outcome_values` turns the items' results into the row's
outcome: processed, failed (retry scheduled) or dead.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.events.outbox import discard as discard_events
from wa_core.events.outbox import flush_events
from wa_core.events.outbox import mark as events_mark
from wa_core.events.outbox import stamp as stamp_events
from wa_core.explorer.keys import extract_keys
from wa_core.settings import Settings

from .context import ChangeContext, FirstSeen, Route
from .errors import InvalidPayload, ItemError
from .handlers import HANDLERS, ignore_change
from .records import Planned, ignored, parse_body
from .store import apply_plan

log = logging.getLogger("wa_core.processing")


@dataclass
class WebhookOutcome:
    """What happened to one webhook row: item counts, errors and the resulting state."""

    webhook_log_id: int
    status: str = "processed"
    items_received: int = 0
    items_processed: int = 0
    items_ignored: int = 0
    items_failed: int = 0
    items_dead: int = 0
    received_at: datetime | None = None
    fields: Counter = field(default_factory=Counter)
    errors: list[tuple[str, str, bool]] = field(default_factory=list)  # (kind, message, retryable)
    organization_id: Any = None

    def fail(self, kind: str, message: str, retryable: bool) -> None:
        """Record one failed item."""
        self.items_failed += 1
        self.errors.append((kind, message, retryable))


def describe_error(exc: BaseException) -> tuple[str, str, bool]:
    """(error kind, message without payload values, retryable) for an unexpected exception.

    A value the database refuses (too long, out of range, untranslatable) will be refused
    on every attempt: ``invalid_value``, permanent. Anything else is a handler error and is
    retried (a fix can be deployed meanwhile). Messages never carry SQL parameters (engines
    use ``hide_parameters``) nor the exception's own text for non-database errors, since
    that text may quote message bodies or phone numbers.
    """
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:
        first_line = str(exc.orig).strip().splitlines()[0][:200] if str(exc.orig).strip() else ""
        detail = f"{type(exc.orig).__name__}: {first_line}"
        if isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)):
            return "invalid_value", detail, False
        return "handler_error", detail, True
    if isinstance(exc, (UnicodeError, OverflowError)):
        return "invalid_value", type(exc).__name__, False
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f" at {frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else ""
    return "handler_error", f"{type(exc).__name__}{where}", True


def retry_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt: exponential from ``processing_retry_base_seconds``,
    capped at ``processing_retry_max_seconds``, with full jitter in [50 %, 100 %]."""
    delay = min(settings.processing_retry_max_seconds, settings.processing_retry_base_seconds * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


#: units applied between intermediate commits of one webhook (a 3 MB history webhook holds
#: thousands of messages: it must not become one giant transaction)
COMMIT_EVERY = 500


class Unit:
    """One item of a webhook: where it is (``where`` = ``entry[i].changes[j]``, ``label``), its
    work (a :data:`~.records.Plan`, or a function applying it with SQL) and its ``result``:
    ``"processed"``, ``"ignored"``, a failure ``(kind, message, retryable)``, or None while
    it waits to be written."""

    __slots__ = ("where", "label", "work", "result")

    def __init__(self, where: str | None, label: str | None, work: Any = None, result: Any = None) -> None:
        self.where, self.label, self.work, self.result = where, label, work, result

    def fail(self, kind: str, message: str, retryable: bool) -> None:
        """Record this item's failure (``message`` without payload values)."""
        place = self.where if self.label is None else f"{self.where}.{self.label}"
        self.result = (kind, f"{place}: {message}" if place else message, retryable)


@dataclass(slots=True)
class ParsedRow:
    """A webhook row walked into :class:`Unit` items (nothing written yet). ``preset``: the
    outcome is already final (body purged, not JSON, not an envelope, a crashed claim)."""

    outcome: WebhookOutcome
    units: list[Unit] = field(default_factory=list)
    organization_ids: FirstSeen = field(default_factory=FirstSeen)
    preset: bool = False
    #: the body's search keys for the webhook explorer (:func:`wa_core.explorer.keys.extract_keys`)
    keys: list[tuple[str, str]] = field(default_factory=list)


def _failed_unit(where: str | None, kind: str, message: str, retryable: bool) -> Unit:
    unit = Unit(where, None)
    unit.fail(kind, message, retryable)
    return unit


def _plan_change(ctx: ChangeContext, parsed: ParsedRow, where: str) -> None:
    handler = HANDLERS.get(ctx.field, ignore_change)
    parsed.outcome.fields[ctx.field or "(none)"] += 1
    units = parsed.units
    try:
        pairs = list(handler(ctx))
    except ItemError as exc:
        units.append(_failed_unit(where, exc.kind, str(exc), exc.retryable))
        return
    except sa.exc.OperationalError:
        raise
    except Exception as exc:  # a handler bug while reading the change: the change fails, not the run
        kind, message, retryable = describe_error(exc)
        log.error("handler error in webhook %s at %s: %s", ctx.webhook_log_id, where, message)
        units.append(_failed_unit(where, kind, message, retryable))
        return
    if not pairs:  # nothing to apply (e.g. an empty array): one ignored item, never silence
        units.append(Unit(where, None, result="ignored"))
        return
    for label, work in pairs:
        unit = Unit(where, label)
        if work is ignored:
            unit.result = "ignored"
        elif isinstance(work, Planned):
            try:
                unit.work = work.build()
                if unit.work is None:
                    unit.result = "ignored"
            except ItemError as exc:
                unit.fail(exc.kind, str(exc), exc.retryable)
            except Exception as exc:  # a handler bug or an unexpected shape: keep the siblings going
                _handler_error(unit, exc, ctx.webhook_log_id)
        else:
            unit.work = work
        units.append(unit)


def _handler_error(unit: Unit, exc: BaseException, webhook_log_id: int) -> None:
    kind, message, retryable = describe_error(exc)
    log.error("handler error in webhook %s at %s.%s: %s", webhook_log_id, unit.where, unit.label, message)
    log.debug("handler error traceback", exc_info=True)  # may hold payload values: DEBUG only
    unit.fail(kind, message, retryable)


def parse_webhook(
    conn: Connection,
    webhook_log_id: int,
    body: bytes | None,
    received_at: datetime,
    routes: dict[str, Route | None] | None = None,
) -> ParsedRow:
    """Walk one webhook body into items: every entry × change, each handler's units, each
    planned item built (rows in Python, nothing written). Only routing look-ups touch the
    database (cached in ``routes`` for the batch). Never raises for bad input: a body that
    is not JSON, or not an envelope, becomes one permanent failure; unknown fields are
    ignored. Database errors propagate.
    """
    parsed = ParsedRow(WebhookOutcome(webhook_log_id, received_at=received_at))
    outcome = parsed.outcome
    routes = {} if routes is None else routes
    if body is None:
        parsed.preset = True
        outcome.fail("body_purged", "the body was removed by retention", False)
        return parsed
    try:
        payload, clean = parse_body(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, absurd numbers
        parsed.preset = True
        outcome.items_received = 1
        outcome.fail("invalid_json", f"body is not JSON: {type(exc).__name__}: {str(exc)[:200]}", False)
        return parsed
    parsed.keys = extract_keys(payload)
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        parsed.preset = True
        outcome.items_received = 1
        outcome.fail("invalid_envelope", "body has no entry[] array", False)
        return parsed
    for i, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            parsed.units.append(_failed_unit(None, "invalid_envelope", f"entry[{i}] has no changes[] array", False))
            continue
        for j, change in enumerate(changes):
            if not isinstance(change, dict):
                parsed.units.append(_failed_unit(None, "invalid_envelope", f"entry[{i}].changes[{j}] is not an object", False))
                continue
            ctx = ChangeContext(conn, webhook_log_id, received_at, entry, change, parsed.organization_ids, routes, clean)
            _plan_change(ctx, parsed, f"entry[{i}].changes[{j}]")
    if not parsed.units:  # an envelope with no entries or no changes: say so
        parsed.units.append(Unit(None, None, result="ignored"))
    return parsed


def apply_unit(conn: Connection, unit: Unit, webhook_log_id: int) -> None:
    """Apply one waiting item on ``conn`` in its own savepoint (the per-item path) and set
    its result. A failure rolls back only this item; database trouble
    (``OperationalError``) propagates so the whole row is retried."""
    savepoint = conn.begin_nested()
    since = events_mark(conn)  # the item's events go with its savepoint
    try:
        result = unit.work() if callable(unit.work) else apply_plan(conn, unit.work)
        savepoint.commit()
    except ItemError as exc:
        savepoint.rollback()
        discard_events(conn, since)
        unit.fail(exc.kind, str(exc), exc.retryable)
    except sa.exc.OperationalError:
        savepoint.rollback()
        discard_events(conn, since)
        raise  # the database itself is in trouble: let the whole row retry
    except Exception as exc:  # a handler bug or an unexpected shape: keep the siblings going
        savepoint.rollback()
        discard_events(conn, since)
        _handler_error(unit, exc, webhook_log_id)
    else:
        stamp_events(conn, since, webhook_log_id)
        unit.result = "ignored" if result == "ignored" else "processed"


def settle(parsed: ParsedRow) -> WebhookOutcome:
    """The row's outcome from its items' results, in item order (every item counted once)."""
    outcome = parsed.outcome
    if parsed.preset:
        return outcome
    outcome.items_received = len(parsed.units)
    outcome.items_processed = outcome.items_ignored = outcome.items_failed = 0
    outcome.errors = []
    for unit in parsed.units:
        result = unit.result
        if result == "processed":
            outcome.items_processed += 1
        elif result == "ignored":
            outcome.items_ignored += 1
        elif result is None:  # pragma: no cover - every item gets a result before this
            raise RuntimeError(f"webhook {outcome.webhook_log_id}: an item was never applied")
        else:
            outcome.fail(*result)
    outcome.organization_id = next(iter(parsed.organization_ids), None)
    return outcome


def apply_webhook(
    conn: Connection,
    webhook_log_id: int,
    body: bytes | None,
    received_at: datetime,
    routes: dict[str, Route | None] | None = None,
) -> WebhookOutcome:
    """Apply every item of one webhook body on ``conn``, each in a savepoint (the per-item
    path; :func:`~wa_core.processing.engine.apply_batch` writes whole batches set-based).

    Commits every :data:`COMMIT_EVERY` items so a huge webhook is not one giant transaction;
    the caller commits the rest with the row's outcome. Never raises for bad input (see
    :func:`parse_webhook`). Database errors propagate.
    """
    parsed = parse_webhook(conn, webhook_log_id, body, received_at, routes)
    for n, unit in enumerate(parsed.units, 1):
        if unit.result is None:
            apply_unit(conn, unit, webhook_log_id)
        if n % COMMIT_EVERY == 0:
            flush_events(conn)
            conn.commit()  # every applied item is idempotent: a crash after this re-applies safely
    flush_events(conn)
    return settle(parsed)


def _waits_for_onboarding(outcome: WebhookOutcome, now: datetime, settings: Settings) -> bool:
    """An ``account_update`` for a WABA no one is bound to yet may be waiting for an onboarding
    session (the page posts it after Meta's webhook, or later): it is retried, at the
    capped backoff, for as long as an onboarding lives, and dead-lettered only after."""
    only_unroutable = outcome.errors and all(kind == "unroutable" for kind, _, _ in outcome.errors)
    young = outcome.received_at is not None and now - outcome.received_at < timedelta(seconds=settings.onboarding_ttl_seconds)
    return bool(only_unroutable and set(outcome.fields) == {"account_update"} and young)


def printable(text: str) -> str:
    """``text`` storable in a text column: NUL bytes and lone surrogates become U+FFFD (so a
    poison field name stays visible as such instead of crashing the outcome write)."""
    if "\x00" not in text and (text.isascii() or _encodes(text)):
        return text
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in text)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def outcome_values(outcome: WebhookOutcome, attempts: int, settings: Settings, now: datetime) -> dict[str, Any]:
    """The ``whatsapp_webhook_logs`` columns for ``outcome``, and ``outcome.status`` set:
    processed, failed (retry scheduled) or dead.

    A row is dead when one of its failures can never succeed or when ``attempts`` reached
    ``processing_max_attempts``. Retry state lives in columns, never in the stored body.
    Text is made :func:`printable`.
    """
    values: dict[str, Any] = {
        "items_received": outcome.items_received,
        "items_processed": outcome.items_processed,
        "items_ignored": outcome.items_ignored,
        "items_failed": outcome.items_failed,
        "items_dead": 0,
        "fields": printable(",".join(sorted(outcome.fields))[:255]) or None,
        "locked_until": None,
        "updated_at": now,
        "organization_id": outcome.organization_id,
        "processed_at": None,
    }
    if not outcome.errors:
        outcome.status = "processed"
        values.update(status="processed", processed_at=now, next_attempt_at=None, last_error=None, error_kind=None)
    else:
        kinds = sorted({kind for kind, _, _ in outcome.errors})
        message = "; ".join(msg for _, msg, _ in outcome.errors[:5])
        if len(outcome.errors) > 5:
            message += f"; … and {len(outcome.errors) - 5} more"
        permanent = any(not retryable for _, _, retryable in outcome.errors)
        exhausted = attempts >= settings.processing_max_attempts and not _waits_for_onboarding(outcome, now, settings)
        outcome.status = "dead" if (permanent or exhausted) else "failed"
        outcome.items_dead = outcome.items_failed if exhausted else sum(1 for *_, retryable in outcome.errors if not retryable)
        values["items_dead"] = outcome.items_dead
        values.update(
            status=outcome.status,
            error_kind=printable(",".join(kinds)[:64]),
            last_error=printable(message[:4000]),
            next_attempt_at=None if outcome.status == "dead" else now + timedelta(seconds=retry_delay(attempts, settings)),
        )
    return values


def finish_row(conn: Connection, outcome: WebhookOutcome, attempts: int, settings: Settings) -> None:
    """Write ``outcome`` onto the webhook row (see :func:`outcome_values`), unconditionally."""
    values = outcome_values(outcome, attempts, settings, utcnow())
    if values["organization_id"] is None:
        del values["organization_id"]
    if values["processed_at"] is None:
        del values["processed_at"]
    conn.execute(sa.update(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.id == outcome.webhook_log_id).values(**values))


__all__ = [
    "ParsedRow", "Unit", "WebhookOutcome", "apply_unit", "apply_webhook", "finish_row", "outcome_values",
    "parse_webhook", "printable", "retry_delay", "settle", "InvalidPayload",
]
