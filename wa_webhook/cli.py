"""``wa-onboarding``: the service's one console script.

Commands: ``up`` (the main job), ``migrate``, ``serve``, ``simulate``, ``bind-waba``,
``process`` and ``status``. ``wa-onboarding COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError


def _settings():
    from wa_webhook.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _migrated_settings():
    """Settings of a database that exists and is migrated, or exit 2 with the reason."""
    from wa_webhook.migrate import NotMigrated, require_migrated

    settings = _settings()
    try:
        require_migrated(settings)
    except NotMigrated as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    return settings


def cmd_migrate(args: argparse.Namespace) -> int:
    from wa_webhook.migrate import downgrade, upgrade

    settings = _settings()
    if args.downgrade:
        downgrade(settings, args.revision or "base")
        print(f"downgraded to {args.revision or 'base'}")
    else:
        upgrade(settings, args.revision or "head")
        print(f"upgraded to {args.revision or 'head'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _settings()
    uvicorn.run(
        "wa_webhook.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from wa_webhook.simulate import DEFAULT_CORPUS, SendReport, SyntheticStream, load_corpus, send_corpus, send_stream, synthetic_numbers

    settings = _settings()
    secret = args.app_secret or (settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else None)
    if not secret:
        print("error: no app secret: set META_APP_SECRET or pass --app-secret", file=sys.stderr)
        return 2
    report = SendReport()
    if not args.no_corpus:
        corpus = load_corpus(Path(args.corpus) if args.corpus else DEFAULT_CORPUS)
        asyncio.run(send_corpus(args.url, secret, corpus, report))
        print(f"corpus: {report.summary()}")
    if args.rate > 0 and args.duration > 0:
        stream_report = SendReport()
        stream = SyntheticStream(synthetic_numbers(args.orgs), seed=args.seed)
        asyncio.run(send_stream(args.url, secret, stream, args.rate, args.duration, stream_report, args.concurrency))
        print(f"stream: {stream_report.summary()}")
        report.gave_up += stream_report.gave_up
    return 1 if report.gave_up else 0


def cmd_bind_waba(args: argparse.Namespace) -> int:
    from wa_webhook.bindings import BindingConflict, PhoneNumber, bind_waba, ensure_organization
    from wa_webhook.db.engine import create_sync_engine

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
    from wa_pipelines.processing.runner import run_processing
    from wa_webhook.db.engine import create_processing_engine

    settings = _migrated_settings()
    engine = create_processing_engine(settings)
    stats = run_processing(engine, settings, idle_exit_seconds=args.idle_exit_seconds, max_seconds=args.max_seconds)
    print(
        f"processed {stats.webhooks} webhooks: {dict(stats.by_status)}; items processed {stats.items_processed}, "
        f"ignored {stats.items_ignored}, failed {stats.items_failed}; errors {dict(stats.by_error)}"
    )
    return 0


def cmd_rotate_token_key(args: argparse.Namespace) -> int:
    """Re-encrypt every stored business token under the current TOKEN_ENCRYPTION_KEY."""
    import sqlalchemy as sa

    from wa_webhook.db.engine import create_sync_engine
    from wa_webhook.db.schema import whatsapp_connections as table
    from wa_webhook.security.crypto import TokenCryptoError, TokenCipher, reencrypt_all

    settings = _migrated_settings()
    try:
        cipher = TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)
    except TokenCryptoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def cmd_status(args: argparse.Namespace) -> int:
    from wa_webhook.db.engine import create_sync_engine
    from wa_webhook.summary import format_summary, stored_summary

    engine = create_sync_engine(_migrated_settings())
    with engine.connect() as conn:
        summary = stored_summary(conn)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from wa_webhook.up import UpOptions, run_up

    options = UpOptions(
        host=args.host,
        receiver_port=args.receiver_port,
        dagster_port=args.dagster_port,
        rate=args.rate,
        duration=args.duration,
        orgs=args.orgs,
        exit_when_done=args.exit_when_done,
        wait_seconds=args.wait_seconds,
    )
    return run_up(_settings(), options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="wa-onboarding", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="the main job: migrate, start receiver + Dagster, replay signed webhooks, report")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--receiver-port", type=int, default=8000)
    p.add_argument("--dagster-port", type=int, default=3000)
    p.add_argument("--rate", type=float, default=10.0, help="synthetic webhooks per second (default 10)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of synthetic stream (default 30; 0 = corpus only)")
    p.add_argument("--orgs", type=int, default=3, help="synthetic organizations (default 3)")
    p.add_argument("--wait-seconds", type=float, default=300.0, help="how long to wait for processing (default 300)")
    p.add_argument("--exit-when-done", action="store_true", help="stop the services after the report instead of running on")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("migrate", help="apply database migrations (Alembic)")
    p.add_argument("--revision", help="target revision (default head, or base with --downgrade)")
    p.add_argument("--downgrade", action="store_true")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="run the webhook receiver (uvicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("simulate", help="send signed webhooks to a receiver like Meta does")
    p.add_argument("--url", default="http://127.0.0.1:8000/api/v1/whatsapp/webhook")
    p.add_argument("--corpus", help="folder of *.json bodies (default tests/fixtures/meta)")
    p.add_argument("--no-corpus", action="store_true", help="skip the corpus, only the synthetic stream")
    p.add_argument("--rate", type=float, default=0.0, help="synthetic webhooks per second (default 0 = none)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of synthetic stream")
    p.add_argument("--orgs", type=int, default=3, help="synthetic organizations (bind them with `up` or bind-waba)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seed", type=int)
    p.add_argument("--app-secret", help="sign with this secret instead of META_APP_SECRET")
    p.set_defaults(func=cmd_simulate)

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

    p = sub.add_parser("process", help="process landed webhooks without Dagster (drain and exit)")
    p.add_argument("--idle-exit-seconds", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("rotate-token-key", help="re-encrypt every business token under the current TOKEN_ENCRYPTION_KEY")
    p.set_defaults(func=cmd_rotate_token_key)

    p = sub.add_parser("status", help="what is stored: webhooks by state, messages, statuses, connections")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wa-onboarding``."""
    args = build_parser().parse_args(argv)
    from wa_webhook.logs import configure_logging

    configure_logging()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
