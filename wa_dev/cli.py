"""``wa-dev``: every ``wa-onboarding`` command plus the developer's: ``up`` (the main job: the
whole stack on the embedded default, fed with realistic signed webhooks), ``simulate`` (send
signed webhooks to a receiver like Meta does) and ``config-docs`` (the configuration reference
and ``.env.example`` from ``wa_core/settings.py``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from wa_webhook.cli import build_parser as operator_parser
from wa_webhook.cli import main as operator_main
from wa_webhook.cli import settings_or_exit


def cmd_simulate(args: argparse.Namespace) -> int:
    from wa_dev.simulate import DEFAULT_CORPUS, SendReport, SyntheticStream, load_corpus, send_corpus, send_stream, synthetic_numbers

    settings = settings_or_exit()
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


def cmd_up(args: argparse.Namespace) -> int:
    from wa_dev.up import UpOptions, run_up

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
    return run_up(settings_or_exit(), options)


def cmd_config_docs(args: argparse.Namespace) -> int:
    from wa_dev.config_docs import main as config_docs_main

    return config_docs_main(["--check"] if args.check else [])


def add_dev_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``up`` and ``simulate`` to a parser's subcommands."""
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

    p = sub.add_parser("config-docs", help="regenerate docs/configuration.md's settings table and .env.example from wa_core/settings.py")
    p.add_argument("--check", action="store_true", help="exit 1 if either file is out of date; write nothing")
    p.set_defaults(func=cmd_config_docs)



def build_parser() -> argparse.ArgumentParser:
    """The operator's parser with ``up`` and ``simulate`` added."""
    return operator_parser(prog="wa-dev", add_commands=add_dev_commands, description=__doc__.split("\n\n")[0].replace("``", "`"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wa-dev``."""
    return operator_main(argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
