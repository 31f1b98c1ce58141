"""``wa-onboarding webhooks search|trace|rejected``: the webhook explorer on the command line.

Same queries as the admin API (:mod:`wa_core.explorer`); read-only. Exit 0 with results,
1 when a trace names no webhook, 2 for a malformed filter or a database not migrated.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from wa_core.timebounds import to_utc


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: an ISO time, e.g. 2026-12-01T10:00:00Z") from exc
    try:
        return to_utc(parsed)
    except ValueError as exc:  # no UTC equivalent (e.g. 9999-12-31T23:59:59-05:00)
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _engine():
    from wa_core.db.engine import create_sync_engine
    from wa_webhook.cli import _migrated_settings

    return create_sync_engine(_migrated_settings())


def cmd_search(args: argparse.Namespace) -> int:
    from wa_core.explorer.search import InvalidSearch, WebhookSearch, search_webhooks

    query = WebhookSearch(
        wamid=args.wamid, phone_number_id=args.phone_number_id, wa_id=args.wa_id, user_id=args.user_id, waba_id=args.waba_id,
        field=args.field, status=tuple(args.status), error_kind=args.error_kind, received_from=args.received_from,
        received_to=args.received_to, before_id=args.before_id,
    )
    try:
        with _engine().connect() as conn:
            found = search_webhooks(conn, query, args.limit)
    except InvalidSearch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for w in found["webhooks"]:
        error = f"  {w['error_kind']}: {(w['last_error'] or '')[:80]}" if w["error_kind"] else ""
        print(f"{w['id']:>10}  {w['received_at']}  {w['status']:<9}  {w['fields'] or '-':<24}  "
              f"{w['items_processed'] or 0}/{w['items_received'] or 0} items{error}")
    if not found["webhooks"]:
        print("no webhook matches")
    elif found["next_before_id"]:
        print(f"… older ones: --before-id {found['next_before_id']}")
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from wa_core.explorer.trace import trace_webhook

    with _engine().connect() as conn:
        found = trace_webhook(conn, args.id, include_body=args.body)
    if found is None:
        print(f"no webhook {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2))
    return 0


def cmd_rejected(args: argparse.Namespace) -> int:
    from wa_core.explorer.rejections import recent_rejections

    with _engine().connect() as conn:
        print(json.dumps(recent_rejections(conn, since=args.since, limit=args.limit), indent=2, default=str))
    return 0


def add_commands(sub) -> None:
    """Add ``webhooks`` with its ``search``, ``trace`` and ``rejected`` subcommands."""
    webhooks = sub.add_parser("webhooks", help="find landed webhooks by their ids, trace one, list rejected deliveries")
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    p = commands.add_parser("search", help="landed webhooks matching every filter given, newest first")
    for name in ("wamid", "phone-number-id", "wa-id", "user-id", "waba-id", "field"):
        p.add_argument(f"--{name}", help="found in the body (once processed)")
    p.add_argument("--status", action="append", default=[], help="pending, processed, failed or dead (repeatable)")
    p.add_argument("--error-kind")
    p.add_argument("--from", dest="received_from", type=_time, help="received at or after (ISO, UTC if no offset)")
    p.add_argument("--to", dest="received_to", type=_time, help="received before (ISO, UTC if no offset)")
    p.add_argument("--before-id", type=int, help="the next page: webhooks older than this id")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)
    p = commands.add_parser("trace", help="arrival, items, rows written of one webhook (JSON)")
    p.add_argument("id", type=int)
    p.add_argument("--body", action="store_true", help="include the raw body while retention keeps it")
    p.set_defaults(func=cmd_trace)
    p = commands.add_parser("rejected", help="deliveries the receiver refused (bad signature, too large), JSON")
    p.add_argument("--since", type=_time, help="default: the last 24 h")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_rejected)
