"""``wa-dev up`` (what ``bin/up`` runs): the main job. Migrate, start the receiver and Dagster,
replay the fixture corpus and a steady synthetic stream as signed webhooks, wait for
processing, print where to look and what was stored.

On the embedded default (no ``DATABASE_URL``) everything lives under ``WA_DATA_DIR``:
the SQLite app database and ``dagster_home`` with Dagster's own SQLite storage. With a
Postgres ``DATABASE_URL`` the app uses it and Dagster uses a sibling database
``<name>_dagster`` on the same server (``DAGSTER_POSTGRES_URL`` overrides), created if missing.

The parts: :mod:`wa_dev.stack` (the child processes, Dagster's home and storage, the waits),
:mod:`wa_dev.feed` (demo bindings, the signed traffic, the demo onboardings),
:mod:`wa_dev.report` (what is printed at the end).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from wa_core.db.migrate import upgrade
from wa_core.settings import Settings
from wa_dev.feed import bind_demo_numbers, demo_onboardings, feed_demo_traffic, give_demo_numbers_tokens
from wa_dev.report import dashboards_refreshed_since, operations_report, stored_report, where_to_look
from wa_dev.stack import (
    Services,
    end_runs_left_behind,
    init_dagster_storage,
    port_free,
    prepare_app_database,
    prepare_dagster_home,
    processing_run_windows,
    stop_stack,
    wait_daemon_ready,
    wait_http,
    wait_processed,
    wait_runs_finished,
)

DEMO_APP_SECRET = "demo_app_secret_not_real"
DEMO_VERIFY_TOKEN = "demo_verify_token"
DEMO_TOKEN_KEY = "de" * 32  # a fixed, public demo key: the demo stores only emulator tokens
DEMO_ADMIN_TOKEN = "demo_admin_token_not_real"
#: gRPC timeout of Dagster's calls to its code servers (launching a run, a sensor tick):
#: Dagster's default 60 s is missed on a loaded 2-core machine ("Failed to start")
DEMO_GRPC_TIMEOUT = {"DAGSTER_GRPC_TIMEOUT_SECONDS": "180"}

#: processing settings of the demo (unless set): runs stay alive per shard as in production but
#: roll over every 2 minutes, so the UI shows finished runs with their figures within minutes
DEMO_PROCESSING = {"PROCESSING_RUN_MAX_SECONDS": "120"}
#: with --exit-when-done runs also end after 10 s idle, so the last ones record SUCCESS and
#: their figures before the services stop
DEMO_EXIT_PROCESSING = {
    "PROCESSING_IDLE_EXIT_SECONDS": "10",
    # the demo sets no push endpoint: no always-on delivery run that would outlive the feed
    "EVENT_PUSH_KEEP_ALIVE": "false",
}


@dataclass
class UpOptions:
    """Options of ``wa-dev up`` (see ``--help``)."""

    host: str = "127.0.0.1"
    receiver_port: int = 8000
    dagster_port: int = 3000
    rate: float = 10.0
    duration: float = 30.0
    orgs: int = 3
    exit_when_done: bool = False
    wait_seconds: float = 300.0


def demo_environment(settings: Settings, options: UpOptions) -> tuple[Settings, dict[str, str], bool]:
    """The settings and child-process environment of the run: demo secrets for what is not
    set (printed), the Graph emulator's Meta app when no ``META_APP_ID`` is set, the demo
    processing settings unless set. Returns ``(settings, env, demo_meta)``."""
    env = dict(os.environ)
    if not settings.meta_app_secret:
        print(f"META_APP_SECRET is not set: using the demo secret {DEMO_APP_SECRET!r} for this run.")
        env["META_APP_SECRET"] = DEMO_APP_SECRET
        settings = settings.model_copy(update={"meta_app_secret": SecretStr(DEMO_APP_SECRET)})
    if not settings.meta_webhook_verify_token:
        print(f"META_WEBHOOK_VERIFY_TOKEN is not set: using the demo verify token {DEMO_VERIFY_TOKEN!r}.")
        env["META_WEBHOOK_VERIFY_TOKEN"] = DEMO_VERIFY_TOKEN
    if not settings.token_encryption_key:
        print("TOKEN_ENCRYPTION_KEY is not set: using a demo key for this run (never in production).")
        env["TOKEN_ENCRYPTION_KEY"] = DEMO_TOKEN_KEY
        settings = settings.model_copy(update={"token_encryption_key": SecretStr(DEMO_TOKEN_KEY)})
    if not settings.admin_api_token:
        print(f"ADMIN_API_TOKEN is not set: using the demo admin token {DEMO_ADMIN_TOKEN!r} (Authorization: Bearer …).")
        env["ADMIN_API_TOKEN"] = DEMO_ADMIN_TOKEN
        settings = settings.model_copy(update={"admin_api_token": SecretStr(DEMO_ADMIN_TOKEN)})
    from wa_dev.demo_onboarding import DEMO_APP_ID, DEMO_CONFIG_ID, DEMO_JWT_SECRET

    demo_meta = not settings.meta_app_id  # no real Meta app configured: the local Graph emulator plays Meta
    if demo_meta:
        env.update({"META_APP_ID": DEMO_APP_ID, "META_CONFIG_ID": DEMO_CONFIG_ID, "REGISTER_PIN": env.get("REGISTER_PIN", "123456")})
        if "JWT_SECRET" not in env and "JWT_PUBLIC_KEY" not in env:
            print(f"JWT_SECRET is not set: the organization API verifies HS256 JWTs signed with the demo secret {DEMO_JWT_SECRET!r}"
                  " (mint your own: docs/integrate.md).")
        env.setdefault("JWT_SECRET", DEMO_JWT_SECRET)
        env["EMBEDDED_SIGNUP_MESSAGE_ORIGINS"] = f"facebook.com,{options.host}"
    env["WA_DATA_DIR"] = str(settings.data_dir.resolve())
    env.setdefault("API_DOCS", "on")  # /docs, /redoc, /openapi.json (off by default outside the demo)
    env.setdefault("ALERT_ENVIRONMENT", "demo")  # not production: no production-only start-up warnings
    for key, value in {**DEMO_PROCESSING, **DEMO_GRPC_TIMEOUT, **(DEMO_EXIT_PROCESSING if options.exit_when_done else {})}.items():
        env.setdefault(key, value)  # demo: runs roll over (and record their figures) every two minutes
    return settings, env, demo_meta


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_up(settings: Settings, options: UpOptions) -> int:
    """Run the main job; returns a process exit code (0 done, 1 webhooks lost, still pending
    or a service failed, 2 a port in use or an app database that cannot be used or created)."""
    started_at = time.time()
    settings, env, demo_meta = demo_environment(settings, options)
    for port in (options.receiver_port, options.dagster_port):
        if not port_free(options.host, port):
            print(f"error: port {port} on {options.host} is in use; choose another with --receiver-port/--dagster-port", file=sys.stderr)
            return 2
    created = prepare_app_database(settings)
    if created and created.startswith("error:"):
        print(created, file=sys.stderr)
        return 2
    from wa_pipelines.definitions import defs

    defs.get_repository_def().load_all_definitions()  # fail here, not silently in the daemon
    where = "Postgres" if settings.is_postgres else f"SQLite {settings.sqlite_path}"
    print(f"app database: {where}" + (f" ({created})" if created else ""))
    upgrade(settings)
    print("migrations: at head")
    home = prepare_dagster_home(settings, env)
    init_dagster_storage(env)  # before the webserver and the daemon race to create it
    print(f"dagster home: {home} ({'Postgres' if settings.is_postgres else 'SQLite'} storage)")
    stale = end_runs_left_behind(env, "left in flight by an earlier `wa-dev up` that stopped; its process is gone")
    if stale:
        print(f"dagster: canceled {stale} run(s) an earlier stop left queued or starting (they would hold the queue)")
    bind_demo_numbers(settings, options.orgs)

    emulator = None
    if demo_meta:
        from wa_dev.demo_onboarding import start_emulator

        webhook_url = f"http://{options.host}:{options.receiver_port}/api/v1/whatsapp/webhook"
        emulator = start_emulator(settings.meta_app_secret.get_secret_value(), webhook_url)
        env["GRAPH_API_BASE_URL"] = emulator.base_url
        env["EMBEDDED_SIGNUP_SDK_URL"] = f"{emulator.base_url}/sdk.js"
        give_demo_numbers_tokens(settings, emulator.emulator, options.orgs, emulator.base_url)
        print(f"Meta: no META_APP_ID set, the local Graph emulator plays Meta at {emulator.base_url} "
              "(the demo numbers have business tokens it accepts: their media download)")
    bin_dir = Path(sys.executable).parent
    services = Services(env, settings.data_dir.resolve() / "logs")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)  # stop the services on kill too, not only on Ctrl-C
    try:
        services.start("receiver", [str(bin_dir / "wa-onboarding"), "serve", "--host", options.host, "--port", str(options.receiver_port)])
        services.start("dagster-webserver", [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", options.host, "-p", str(options.dagster_port)])
        services.start("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        base = f"http://{options.host}:{options.receiver_port}"
        wait_http(f"{base}/readyz", services, 60)
        print(f"receiver: {base} (ready)")
        wait_http(f"http://{options.host}:{options.dagster_port}/server_info", services, 180)
        print(f"dagster: http://{options.host}:{options.dagster_port} (ready)")
        if not wait_daemon_ready(env, services, started_at, 360):
            print(f"warning: the Dagster daemon has not reported in yet; runs start once it has (see {services.log_dir})")
        else:
            print("dagster daemon: code location loaded, sensors running")

        url = f"{base}/api/v1/whatsapp/webhook"
        secret = settings.meta_app_secret.get_secret_value()
        lost = feed_demo_traffic(url, secret, options.rate, options.duration, options.orgs)
        if emulator is not None:
            demo_onboardings(base, url, emulator, secret)
        print("waiting for Dagster to process everything…")
        done = wait_processed(settings, options.wait_seconds, services)
        print(stored_report(settings, since=started_at, run_windows=processing_run_windows(env, started_at)))
        if not done:
            print(f"warning: webhooks still pending after {options.wait_seconds:.0f}s; see {services.log_dir}")
        print(demo_credentials(env, base, emulator is not None))
        print(where_to_look(options.host, options.dagster_port, base, services.log_dir))
        if options.exit_when_done:
            # let the processing run end by itself (idle exit) so it records SUCCESS and its
            # figures, and the dashboard refresh that follows it
            idle = float(env["PROCESSING_IDLE_EXIT_SECONDS"])
            print(f"waiting for the Dagster runs to finish (processing runs end after {idle:g}s idle)…")
            if not wait_runs_finished(env, float(env["PROCESSING_RUN_MAX_SECONDS"]) + 60, services):
                print("warning: a Dagster run was still in flight; the stop cancels it")
            print(operations_report(settings))
            return 0 if done and not lost else 1
        print(f"\nrunning; press Ctrl-C to stop. The dashboards and open alerts are printed here when the first "
              f"refresh_dashboards run after this start lands (after the first processing run rolls over, "
              f"within ~{float(env['PROCESSING_RUN_MAX_SECONDS']) / 60 + 1:.0f} minutes).")
        shown = False
        while True:
            services.check()
            if not shown and dashboards_refreshed_since(settings, started_at):
                print(operations_report(settings))
                shown = True
            time.sleep(5)
    except KeyboardInterrupt:
        print("\nstopping… (Dagster's runs in flight end canceled first; Ctrl-C again to stop at once)")
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # the runs in flight end CANCELED before the services stop (an operator's stop is no failure)
        for line in stop_stack(env, services):
            print(line)
        if emulator is not None:
            emulator.stop()


def demo_credentials(env: dict[str, str], base: str, demo_meta: bool) -> str:
    """The demo's admin token and organization JWTs, with a command to try each (the admin
    token only when the demo set it; the JWTs only with the demo's own ``JWT_SECRET``)."""
    lines = ["\ntry the APIs:"]
    if env.get("ADMIN_API_TOKEN") == DEMO_ADMIN_TOKEN:
        lines.append(f"  admin API         curl -H 'Authorization: Bearer {DEMO_ADMIN_TOKEN}' {base}/api/admin/whatsapp/status")
    if demo_meta:
        from wa_dev.demo_onboarding import DEMO_JWT_SECRET, demo_token

        if env.get("JWT_SECRET") == DEMO_JWT_SECRET:
            lines.append(f"  read API (acme)   curl -H 'Authorization: Bearer {demo_token('acme')}' {base}/api/v1/whatsapp/conversations")
            lines.append(f"  onboarding page   {base}/onboarding?token={demo_token('newcomer')}  (an empty organization: try the button yourself)")
            lines.append("  (JWTs: HS256 with the demo JWT_SECRET, valid 1 hour; docs/integrate.md)")
    return "\n".join(lines) if len(lines) > 1 else ""
