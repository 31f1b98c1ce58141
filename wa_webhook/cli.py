"""``wa-onboarding``: the operator's console script.

Commands: ``migrate``, ``serve``, ``bind-waba``, ``process``, ``pause``, ``resume``, ``caps``,
``rotate-token-key``, ``request-sync``, ``webhooks search|trace|rejected``, ``doctor`` and ``status``. ``wa-onboarding COMMAND --help`` describes each. The developer's commands (``up``,
the main job, and ``simulate``) are in ``wa-dev`` (:mod:`wa_dev.cli`), which has these too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from pydantic import ValidationError


def settings_or_exit():
    """The settings, or exit 2 with the configuration error."""
    from wa_core.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _migrated_settings():
    """Settings of a database that exists and is migrated, or exit 2 with the reason."""
    from wa_core.db.migrate import NotMigrated, require_migrated

    settings = settings_or_exit()
    try:
        require_migrated(settings)
    except NotMigrated as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    return settings


def _cipher_or_exit(settings, hint: str = ""):
    """The business-token cipher of ``settings`` (TOKEN_ENCRYPTION_KEY and previous keys), or
    print the reason (and ``hint``) and exit 2."""
    from wa_core.meta.crypto import TokenCipher, TokenCryptoError

    try:
        return TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)
    except TokenCryptoError as exc:
        print(f"error: {exc}{hint}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from wa_core.db.migrate import DatabaseUnavailable, downgrade, upgrade

    settings = settings_or_exit()
    try:
        if args.downgrade:
            downgrade(settings, args.revision or "base")
            print(f"downgraded to {args.revision or 'base'}")
        else:
            if upgrade(settings, args.revision or "head"):
                print(f"app database {make_url(settings.database_url).database!r} did not exist: created it")
            print(f"upgraded to {args.revision or 'head'}")
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from wa_webhook.http_guard import RequestTimeoutProtocol

    settings = settings_or_exit()
    # the app refuses a missing or malformed key at start-up too, but inside uvicorn's loader
    # (a traceback); here it is one line and exit 2
    _cipher_or_exit(settings, hint=" (generate one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    uvicorn.run(
        "wa_webhook.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        http=RequestTimeoutProtocol,  # httptools, plus deadlines for request headers and bodies
        # no WebSocket route: an upgrade request is plain HTTP, not handed to a protocol outside
        # both deadlines (a POST with `Upgrade: websocket` was held there unanswered for good)
        ws="none",
    )
    return 0


def cmd_bind_waba(args: argparse.Namespace) -> int:
    from wa_core.bindings import BindingConflict, PhoneNumber, bind_waba, ensure_organization
    from wa_core.db.engine import create_sync_engine

    engine = create_sync_engine(_migrated_settings())
    numbers = [
        PhoneNumber(pid, args.display_phone_number, args.verified_name, args.coexistence) for pid in args.phone_number_id
    ]
    try:
        with engine.begin() as conn:
            org_id = ensure_organization(conn, args.org, args.org_name)
            connection_id = bind_waba(conn, org_id, args.waba_id, numbers, owner_business_id=args.owner_business_id)
    except BindingConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bound WABA {args.waba_id} to organization {args.org} (connection {connection_id})")
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """Process landed webhooks of one shard in this process, without Dagster. SIGTERM/SIGINT
    finish the batch in hand and exit 0 (leases are not left to expire)."""
    import math
    import signal

    from wa_core.processing.runner import run_processing
    from wa_core.db.engine import create_processing_engine

    settings = _migrated_settings()
    shards = settings.processing_shards if args.shards is None else args.shards
    if not (shards >= 1 and 0 <= args.shard < shards):
        print(f"error: --shard must be in 0..{shards - 1} (--shards {shards})", file=sys.stderr)
        return 2
    engine = create_processing_engine(settings)
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.append(True))
    if args.stay_alive:
        idle_exit, max_seconds = math.inf, args.max_seconds or math.inf
    else:
        idle_exit, max_seconds = args.idle_exit_seconds, args.max_seconds or 600.0
    stats = run_processing(
        engine,
        settings,
        idle_exit_seconds=idle_exit,
        max_seconds=max_seconds,
        shard=args.shard,
        shards=shards,
        should_stop=lambda: bool(stop),
    )
    engine.dispose()
    print(
        f"shard {args.shard} of {shards}: processed {stats.webhooks} webhooks ({stats.ended}): {dict(stats.by_status)}; "
        f"items processed {stats.items_processed}, ignored {stats.items_ignored}, failed {stats.items_failed}; "
        f"errors {dict(stats.by_error)}; wakes {dict(stats.wakes)}",
        flush=True,
    )
    return 0


def _control(change) -> int:
    """Run ``change(conn)`` of :mod:`wa_core.processing.controls` in one transaction and print its
    state as JSON; exit 2 for a malformed request, 1 for an unknown organization or WABA."""
    from wa_core.db.engine import create_sync_engine

    engine = create_sync_engine(_migrated_settings())
    try:
        with engine.begin() as conn:
            state = change(conn)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(json.dumps(state.as_dict(), indent=2))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause (or, as ``resume``, resume) one organization or one WABA."""
    from wa_core.processing.controls import set_paused

    paused = args.command == "pause"
    reason = getattr(args, "reason", None)
    return _control(lambda conn: set_paused(conn, organization=args.org, waba_id=args.waba_id, paused=paused, reason=reason))


def cmd_caps(args: argparse.Namespace) -> int:
    """Set an organization's own caps ("default" = the global setting, 0 = no cap)."""
    from wa_core.processing.controls import set_caps

    given = {
        name: None if value == "default" else int(value)
        for name, value in (("max_in_flight", args.max_in_flight), ("webhooks_per_minute", args.per_minute))
        if value is not None
    }
    return _control(lambda conn: set_caps(conn, args.org, **given))


def cmd_events_endpoint(args: argparse.Namespace) -> int:
    """Set, rotate or disable an organization's event push endpoint (prints the state and,
    for set/rotate, the new secret once)."""
    from types import SimpleNamespace

    from wa_core.events import push
    from wa_core.organizations import resolve_organization

    settings = _migrated_settings()
    if args.action == "set" and not args.url:
        print("error: events-endpoint set needs --url https://…", file=sys.stderr)
        return 2
    cipher = None
    if args.action in ("set", "rotate"):  # only a new secret needs the key (it is stored encrypted)
        cipher = _cipher_or_exit(settings, " (push secrets are stored encrypted with it; use the same value as the service)")

    def change(conn):
        org = resolve_organization(conn, args.org).id
        out = {}
        if args.action == "set":
            out["secret"] = push.set_endpoint(conn, cipher, org, args.url or "")
        elif args.action == "rotate":
            out["secret"] = push.rotate_secret(conn, cipher, org)
        elif args.action == "disable":
            push.disable_endpoint(conn, org)
        state = {**push.endpoint_status(conn, org), **out}
        return SimpleNamespace(as_dict=lambda: state)

    return _control(change)


def cmd_rotate_token_key(args: argparse.Namespace) -> int:
    """Re-encrypt every stored business token under the current TOKEN_ENCRYPTION_KEY."""
    import sqlalchemy as sa

    from wa_core.db.engine import create_sync_engine
    from wa_core.db.schema import whatsapp_connections as table
    from wa_core.meta.crypto import TokenCryptoError, reencrypt_all

    settings = _migrated_settings()
    cipher = _cipher_or_exit(settings)
    engine = create_sync_engine(settings)
    count = 0
    c = table.c
    with engine.begin() as conn:
        stored = conn.execute(sa.select(c.id, c.business_token_encrypted).where(c.business_token_encrypted.is_not(None))).all()
        try:
            for row_id, new_value in reencrypt_all(((r.id, r.business_token_encrypted) for r in stored), cipher):
                conn.execute(sa.update(table).where(c.id == row_id).values(business_token_encrypted=new_value))
                count += 1
        except TokenCryptoError as exc:
            print(f"error: {exc}; nothing was changed (is the old key in TOKEN_ENCRYPTION_PREVIOUS_KEYS?)", file=sys.stderr)
            raise SystemExit(1) from exc
    print(f"re-encrypted {count} of {len(stored)} business tokens under key {cipher.current_key_id}")
    return 0


def cmd_request_sync(args: argparse.Namespace) -> int:
    """Re-request a coexistence number's history or contact sync (exit 1 when refused or failed)."""
    from wa_core.coexistence_sync import UnknownNumber, rerequest
    from wa_core.db.engine import create_sync_engine
    from wa_core.meta.graph.client import GraphClient

    settings = _migrated_settings()
    cipher = _cipher_or_exit(settings)
    try:
        with GraphClient.from_settings(settings) as graph:
            result = rerequest(create_sync_engine(settings), graph, cipher, args.phone_number_id, args.type)
    except UnknownNumber as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    next_at = result.next_allowed_at.isoformat() if result.next_allowed_at else "not before a new onboarding"
    print(f"{result.outcome}: {result.message} (next allowed: {next_at})", file=sys.stdout if result.outcome == "sent" else sys.stderr)
    return 0 if result.outcome == "sent" else 1


def cmd_status(args: argparse.Namespace) -> int:
    from wa_core.db.engine import create_sync_engine
    from wa_core.reporting.summary import format_summary, stored_summary

    settings = _migrated_settings()
    engine = create_sync_engine(settings)
    with engine.connect() as conn:
        summary = stored_summary(conn, expiring_soon_days=settings.token_expiring_soon_days)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """The Meta setup self-test (:mod:`wa_core.doctor`): exit 0 when nothing failed (warnings
    and skips included), 1 when a check failed (unreadable settings too)."""
    from wa_core.doctor import Check, exit_code, run_doctor
    from wa_core.settings import get_settings
    from wa_webhook.doctor import dagster_checks, format_checks

    try:
        settings = get_settings()
    except ValidationError as exc:  # the first finding, not a crash: exit 1 like any failed check
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        checks = [Check("settings", "fail", f"the settings cannot be read: {errors}", "fix those environment variables (docs/configuration.md)")]
        print(json.dumps([c.as_dict() for c in checks], indent=2) if args.json else format_checks(checks))
        return 1
    extra = [] if args.no_dagster else [("dagster", dagster_checks)]
    checks = run_doctor(settings, extra=extra, timeout=args.timeout)
    if args.json:
        print(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        print(format_checks(checks, color=color))
    return exit_code(checks)


def _bad_cap(value: str):
    raise argparse.ArgumentTypeError(f"{value!r}: a whole number (0 = no cap) or 'default'")


def build_parser(
    prog: str = "wa-onboarding", add_commands: Callable | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """The argument parser for every operator command; ``add_commands(subparsers)`` adds more
    first (``wa_dev.cli`` adds the developer's)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__.split("\n\n")[0].replace("``", "`"))
    sub = parser.add_subparsers(dest="command", required=True)
    if add_commands:
        add_commands(sub)

    p = sub.add_parser("migrate", help="apply database migrations (Alembic)")
    p.add_argument("--revision", help="target revision (default head, or base with --downgrade)")
    p.add_argument("--downgrade", action="store_true")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="run the webhook receiver (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bind-waba", help="bind a WABA and its phone numbers to an organization")
    p.add_argument("--org", required=True, help="the organization's external id (created if new)")
    p.add_argument("--org-name")
    p.add_argument("--waba-id", required=True)
    p.add_argument("--phone-number-id", action="append", default=[], help="repeat for several numbers")
    p.add_argument("--display-phone-number")
    p.add_argument("--verified-name")
    p.add_argument("--owner-business-id")
    p.add_argument("--coexistence", action="store_true", help="the number stays on the WhatsApp Business app")
    p.set_defaults(func=cmd_bind_waba)

    p = sub.add_parser("process", help="process landed webhooks without Dagster (drain and exit, or --stay-alive)")
    p.add_argument("--idle-exit-seconds", type=float, default=0.0, help="end after this long idle (default 0: drain and exit)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop claiming after this long (default 600; --stay-alive: never)")
    p.add_argument("--stay-alive", action="store_true", help="a worker: stay alive while idle, woken by NOTIFY, until SIGTERM")
    p.add_argument("--shard", type=int, default=0, help="the shard this process claims (0..shards-1)")
    p.add_argument("--shards", type=int, default=None, help="how many shards the lanes are split into (default PROCESSING_SHARDS)")
    p.set_defaults(func=cmd_process)

    for name, text in (("pause", "pause processing of one organization or WABA (webhooks keep landing and wait)"),
                       ("resume", "resume processing of a paused organization or WABA")):
        p = sub.add_parser(name, help=text)
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--org", help="the organization's id or external id")
        target.add_argument("--waba-id", help="the WABA id (webhooks whose entry[0].id is this WABA)")
        if name == "pause":
            p.add_argument("--reason", help="why (shown in the admin API's controls list)")
        p.set_defaults(func=cmd_pause)

    cap_value = lambda v: v if v == "default" or (v.isdigit() and len(v) <= 7) else _bad_cap(v)  # noqa: E731
    p = sub.add_parser("caps", help="set an organization's own processing caps (default: the global PROCESSING_ORG_* settings)")
    p.add_argument("--org", required=True, help="the organization's id or external id")
    p.add_argument("--max-in-flight", type=cap_value, help="rows leased at once: a number, 0 = no cap, or 'default'")
    p.add_argument("--per-minute", type=cap_value, help="claims per rolling minute: a number, 0 = no cap, or 'default'")
    p.set_defaults(func=cmd_caps)

    p = sub.add_parser("events-endpoint", help="an organization's event push endpoint: set URL, rotate secret, disable, show")
    p.add_argument("action", choices=("set", "rotate", "disable", "show"))
    p.add_argument("--org", required=True, help="the organization's id or external id")
    p.add_argument("--url", help="set: the endpoint URL (https://…)")
    p.set_defaults(func=cmd_events_endpoint)

    p = sub.add_parser("rotate-token-key", help="re-encrypt every business token under the current TOKEN_ENCRYPTION_KEY")
    p.set_defaults(func=cmd_rotate_token_key)

    p = sub.add_parser("request-sync", help="re-request a coexistence number's history or contact sync (24 h rules apply)")
    p.add_argument("phone_number_id")
    p.add_argument("--type", choices=("history", "smb_app_state_sync"), default="history")
    p.set_defaults(func=cmd_request_sync)
    from wa_webhook.cli_webhooks import add_commands as add_webhook_commands

    add_webhook_commands(sub)

    p = sub.add_parser("doctor", help="check the Meta app setup end to end (settings, database, Dagster, Graph, callback URL, tokens)")
    p.add_argument("--json", action="store_true", help="a JSON list of {name, status, detail, fix}")
    p.add_argument("--no-dagster", action="store_true", help="skip the Dagster daemon and sensor checks")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per Graph or callback request (default 10)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("status", help="what is stored: webhooks by state, messages, statuses, connections, token states, backlog")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Entry point of ``wa-onboarding`` (and, with its own parser, of ``wa-dev``)."""
    args = (parser or build_parser()).parse_args(argv)
    from wa_core.logs import configure_logging

    configure_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
