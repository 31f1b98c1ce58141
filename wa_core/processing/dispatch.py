"""Process one landed webhook: parse, walk every entry × change × item, record the outcome.

Each item runs in its own savepoint, so a failing item never undoes or blocks its
siblings. The webhook row's own outcome is written in the same transaction as the items,
so a crash leaves either everything or nothing of that row applied.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wa_core.db.schema import utcnow, whatsapp_webhook_logs
from wa_core.settings import Settings

from .context import ChangeContext, Route
from .errors import InvalidPayload, ItemError
from .handlers import HANDLERS, ignore_change

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


def _apply_change(ctx: ChangeContext, outcome: WebhookOutcome, where: str) -> None:
    handler = HANDLERS.get(ctx.field, ignore_change)
    outcome.fields[ctx.field or "(none)"] += 1
    try:
        units = list(handler(ctx))
    except ItemError as exc:
        outcome.items_received += 1
        outcome.fail(exc.kind, f"{where}: {exc}", exc.retryable)
        return
    except sa.exc.OperationalError:
        raise
    except Exception as exc:  # a handler bug while reading the change: the change fails, not the run
        outcome.items_received += 1
        kind, message, retryable = describe_error(exc)
        log.error("handler error in webhook %s at %s: %s", outcome.webhook_log_id, where, message)
        outcome.fail(kind, f"{where}: {message}", retryable)
        return
    if not units:  # nothing to apply (e.g. an empty array): one ignored item, never silence
        outcome.items_received += 1
        outcome.items_ignored += 1
        return
    for label, apply in units:
        outcome.items_received += 1
        savepoint = ctx.conn.begin_nested()
        try:
            result = apply()
            savepoint.commit()
        except ItemError as exc:
            savepoint.rollback()
            outcome.fail(exc.kind, f"{where}.{label}: {exc}", exc.retryable)
            continue
        except sa.exc.OperationalError:
            savepoint.rollback()
            raise  # the database itself is in trouble: let the whole row retry
        except Exception as exc:  # a handler bug or an unexpected shape: keep the siblings going
            savepoint.rollback()
            kind, message, retryable = describe_error(exc)
            log.error("handler error in webhook %s at %s.%s: %s", outcome.webhook_log_id, where, label, message)
            log.debug("handler error traceback", exc_info=True)  # may hold payload values: DEBUG only
            outcome.fail(kind, f"{where}.{label}: {message}", retryable)
            continue
        if result == "ignored":
            outcome.items_ignored += 1
        else:
            outcome.items_processed += 1
        if outcome.items_received % COMMIT_EVERY == 0:
            ctx.conn.commit()  # every applied unit is idempotent: a crash after this re-applies safely


def apply_webhook(
    conn: Connection,
    webhook_log_id: int,
    body: bytes | None,
    received_at: datetime,
    routes: dict[str, Route] | None = None,
) -> WebhookOutcome:
    """Apply every item of one webhook body on ``conn`` (each item in a savepoint).

    Commits every :data:`COMMIT_EVERY` units so a huge webhook is not one giant transaction;
    the caller commits the rest with the row's outcome. Never raises for bad input: a body
    that is not JSON, or not an envelope, becomes one permanent failure; unknown fields are
    ignored. Database errors propagate. ``routes`` caches found phone-number routes across
    the webhooks of one batch (only found routes: an unroutable number is looked up again).
    """
    outcome = WebhookOutcome(webhook_log_id, received_at=received_at)
    routes = {} if routes is None else routes
    if body is None:
        outcome.fail("body_purged", "the body was removed by retention", False)
        return outcome
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, absurd numbers
        outcome.items_received = 1
        outcome.fail("invalid_json", f"body is not JSON: {type(exc).__name__}: {str(exc)[:200]}", False)
        return outcome
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        outcome.items_received = 1
        outcome.fail("invalid_envelope", "body has no entry[] array", False)
        return outcome
    organization_ids: set = set()
    for i, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            outcome.items_received += 1
            outcome.fail("invalid_envelope", f"entry[{i}] has no changes[] array", False)
            continue
        for j, change in enumerate(changes):
            if not isinstance(change, dict):
                outcome.items_received += 1
                outcome.fail("invalid_envelope", f"entry[{i}].changes[{j}] is not an object", False)
                continue
            ctx = ChangeContext(conn, webhook_log_id, received_at, entry, change, organization_ids, routes)
            _apply_change(ctx, outcome, f"entry[{i}].changes[{j}]")
    if outcome.items_received == 0:  # an envelope with no entries or no changes: say so
        outcome.items_received = outcome.items_ignored = 1
    outcome.organization_id = next(iter(organization_ids), None)
    return outcome


def _waits_for_onboarding(outcome: WebhookOutcome, now: datetime, settings: Settings) -> bool:
    """An ``account_update`` for a WABA no one is bound to yet may be waiting for an onboarding
    session (the page posts it after Meta's webhook, or later): it is retried, at the
    capped backoff, for as long as an onboarding lives, and dead-lettered only after."""
    only_unroutable = outcome.errors and all(kind == "unroutable" for kind, _, _ in outcome.errors)
    young = outcome.received_at is not None and now - outcome.received_at < timedelta(seconds=settings.onboarding_ttl_seconds)
    return bool(only_unroutable and set(outcome.fields) == {"account_update"} and young)


def finish_row(conn: Connection, outcome: WebhookOutcome, attempts: int, settings: Settings) -> None:
    """Write ``outcome`` onto the webhook row: processed, failed (retry scheduled) or dead.

    A row is dead when one of its failures can never succeed or when ``attempts`` reached
    ``processing_max_attempts``. Retry state lives in columns, never in the stored body.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "items_received": outcome.items_received,
        "items_processed": outcome.items_processed,
        "items_ignored": outcome.items_ignored,
        "items_failed": outcome.items_failed,
        "items_dead": 0,
        "fields": ",".join(sorted(outcome.fields))[:255] or None,
        "locked_until": None,
        "updated_at": now,
    }
    if outcome.organization_id is not None:
        values["organization_id"] = outcome.organization_id
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
            error_kind=",".join(kinds)[:64],
            last_error=message[:4000],
            next_attempt_at=None if outcome.status == "dead" else now + timedelta(seconds=retry_delay(attempts, settings)),
        )
    conn.execute(sa.update(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.id == outcome.webhook_log_id).values(**values))


__all__ = ["WebhookOutcome", "apply_webhook", "finish_row", "retry_delay", "InvalidPayload"]
