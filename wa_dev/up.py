"""``wa-onboarding up``: the main job. Migrate, start the receiver and Dagster, replay the
fixture corpus and a steady synthetic stream as signed webhooks, wait for processing,
print where to look and what was stored.

On the embedded default (no ``DATABASE_URL``) everything lives under ``WA_DATA_DIR``:
the SQLite app database and ``dagster_home`` with Dagster's own SQLite storage. With a
Postgres ``DATABASE_URL`` the app uses it and Dagster uses a sibling database
``<name>_dagster`` on the same server (``DAGSTER_POSTGRES_URL`` overrides), created if missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import as_utc, whatsapp_webhook_logs
from wa_core.db.migrate import upgrade
from wa_core.settings import Settings
from wa_dev.simulate import (
    DEFAULT_CORPUS,
    SendReport,
    SyntheticStream,
    load_corpus,
    send_corpus,
    send_stream,
    synthetic_numbers,
)
from wa_core.reporting.summary import format_summary, stored_summary

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_APP_SECRET = "demo_app_secret_not_real"
DEMO_VERIFY_TOKEN = "demo_verify_token"
DEMO_TOKEN_KEY = "de" * 32  # a fixed, public demo key: the demo stores only emulator tokens

#: The fixture corpus's numbers, bound to two demo organizations (``acme`` is a coexistence
#: number: the corpus carries history, echoes and contact sync for it).
CORPUS_BINDINGS = [
    ("acme", "Acme Store", "100000000000001", PhoneNumber("200000000000001", "15550000001", "Acme Store", True)),
    ("globex", "Globex Ltd", "100000000000002", PhoneNumber("200000000000002", "15550000002", "Globex Ltd", False)),
]


@dataclass
class UpOptions:
    """Options of ``wa-onboarding up`` (see ``--help``)."""

    host: str = "127.0.0.1"
    receiver_port: int = 8000
    dagster_port: int = 3000
    rate: float = 10.0
    duration: float = 30.0
    orgs: int = 3
    exit_when_done: bool = False
    wait_seconds: float = 300.0


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def dagster_postgres_url(settings: Settings) -> str:
    """Dagster's storage URL: ``DAGSTER_POSTGRES_URL`` or ``<DATABASE_URL>_dagster``, always
    with the ``postgresql+psycopg2`` scheme dagster-postgres needs under SQLAlchemy 2.1."""
    explicit = os.environ.get("DAGSTER_POSTGRES_URL")
    base = explicit or settings.database_url
    rest = base.split("://", 1)[1]
    if not explicit:
        head, _, tail = rest.rpartition("/")
        name, _, query = tail.partition("?")
        rest = f"{head}/{name}_dagster" + (f"?{query}" if query else "")
    return "postgresql+psycopg2://" + rest


def ensure_postgres_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (needs CREATEDB)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


def prepare_dagster_home(settings: Settings, env: dict[str, str]) -> Path:
    """Create ``DAGSTER_HOME`` with the project's ``dagster.yaml`` (SQLite or Postgres flavour).

    An existing ``DAGSTER_HOME`` set by the operator is used as it is.
    """
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(PROJECT_ROOT / "dagster" / "dagster.yaml", home / "dagster.yaml")
        return home
    home = (settings.data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    flavour = "dagster.postgres.yaml" if settings.is_postgres else "dagster.yaml"
    shutil.copy(PROJECT_ROOT / "dagster" / flavour, home / "dagster.yaml")
    if settings.is_postgres:
        url = dagster_postgres_url(settings)
        ensure_postgres_database(url)
        env["DAGSTER_POSTGRES_URL"] = url
    env["DAGSTER_HOME"] = str(home)
    return home


def bind_demo_numbers(settings: Settings, orgs: int) -> None:
    """Bind the corpus's numbers and ``orgs`` synthetic organizations (idempotent)."""
    engine = create_sync_engine(settings)
    try:
        with engine.begin() as conn:
            for external_id, name, waba_id, number in CORPUS_BINDINGS:
                org_id = ensure_organization(conn, external_id, name)
                bind_waba(conn, org_id, waba_id, [number], owner_business_id="300000000000001")
            for n in synthetic_numbers(orgs):
                org_id = ensure_organization(conn, n.org_external_id, n.org_name)
                bind_waba(conn, org_id, n.waba_id, [PhoneNumber(n.phone_number_id, n.display_phone_number, n.org_name)], status="active")
    finally:
        engine.dispose()


class Services:
    """The receiver, the Dagster webserver and one Dagster daemon as child process groups."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str]) -> None:
        """Start ``args`` in its own session, output to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))

    def check(self) -> None:
        """Raise ``RuntimeError`` if a service exited."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL what is left after 10 s."""
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _wait_http(url: str, services: Services, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.check()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def demo_onboardings(base: str, webhook_url: str, emulator, app_secret: str) -> None:
    """Connect a Cloud API number and a coexistence number like a customer would, then show
    a message flowing for each new number."""
    from wa_dev.demo_onboarding import CLOUD, COEX, connect_with_api, connect_with_browser, message_for

    for spec, label in ((CLOUD, "Cloud API number"), (COEX, "coexistence number")):
        print(f"onboarding ({label}, organization {spec['org']}): clicking Connect WhatsApp…")
        started = time.monotonic()
        result = connect_with_browser(base, spec["org"], spec["coexistence"])
        how = "page in headless Chromium"
        if result is None:
            result, how = connect_with_api(base, emulator.emulator, spec), "API (no Chromium here)"
        print(f"  {result} ({how}, {time.monotonic() - started:.1f}s: session, follow-up run, PARTNER_ADDED)")
        report = SendReport()
        body = message_for(spec, f"wamid.DEMO{spec['phone']}{int(time.time())}", "Hi! Is this the new WhatsApp number?")
        asyncio.run(_send_one(webhook_url, app_secret, body, report))
        print(f"  a customer message to the new number: {report.summary().split(';')[0]}")


#: a WABA the main job announces with PARTNER_ADDED but binds to no one: the operator's
#: "unclaimed WABA" case (asset check, alert, assign_waba job)
DEMO_UNCLAIMED_WABA = "100000000000777"


def unclaimed_partner_added(waba_id: str = DEMO_UNCLAIMED_WABA) -> bytes:
    """A ``PARTNER_ADDED`` webhook (Meta: account_update webhook reference) for ``waba_id``,
    shaped like the corpus's, as Meta sends it when a customer shares a WABA through a
    hosted link we never saw a session for."""
    now = int(time.time())
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "300000000000900",
                    "time": now,
                    "changes": [
                        {
                            "field": "account_update",
                            "value": {
                                "event": "PARTNER_ADDED",
                                "waba_info": {"waba_id": waba_id, "owner_business_id": "300000000000777"},
                            },
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()


async def _send_one(url: str, secret: str, body: bytes, report: SendReport) -> None:
    from wa_dev.simulate import deliver

    async with httpx.AsyncClient(timeout=10) as client:
        await deliver(client, url, body, secret, report)


def wait_processed(settings: Settings, timeout: float, services: Services | None = None) -> bool:
    """Wait until no webhook row is pending or leased; True if reached before ``timeout``."""
    engine = create_sync_engine(settings)
    logs = whatsapp_webhook_logs.c
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if services:
                services.check()
            with engine.connect() as conn:
                busy = conn.execute(
                    sa.select(sa.func.count()).select_from(whatsapp_webhook_logs).where(
                        sa.or_(logs.status == "pending", logs.locked_until.is_not(None))
                    )
                ).scalar_one()
            if not busy:
                return True
            time.sleep(1)
        return False
    finally:
        engine.dispose()


#: processing settings of the demo (unless set): runs stay alive per shard as in production but
#: roll over every 2 minutes, so the UI shows finished runs with their figures within minutes
DEMO_PROCESSING = {"PROCESSING_RUN_MAX_SECONDS": "120"}
#: with --exit-when-done runs also end after 10 s idle, so the last ones record SUCCESS and
#: their figures before the services stop
DEMO_EXIT_PROCESSING = {"PROCESSING_IDLE_EXIT_SECONDS": "10"}


def operations_report(settings: Settings) -> str:
    """What an operator would see after the runs: when each dashboard was last materialised,
    and the alerts still open (``ops_alerts``), one line each."""
    from wa_core.db.schema import dashboard_snapshots, ops_alerts

    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            snapshots = conn.execute(sa.select(dashboard_snapshots.c.asset_key, dashboard_snapshots.c.computed_at)).all()
            alerts = conn.execute(
                sa.select(ops_alerts.c.fingerprint, ops_alerts.c.severity, ops_alerts.c.occurrences)
                .where(ops_alerts.c.resolved_at.is_(None))
                .order_by(ops_alerts.c.fingerprint)
            ).all()
    finally:
        engine.dispose()
    lines = ["\ndashboards (materialised by refresh_dashboards, with their asset checks):"]
    lines += [f"  {key:<22} at {as_utc(at):%H:%M:%S} UTC" for key, at in sorted(snapshots)] or ["  none yet"]
    lines.append("open alerts (also in the log as ALERT lines; Slack/Sentry when configured):")
    lines += [f"  {fp} [{severity}] ×{n}" for fp, severity, n in alerts] or ["  none"]
    return "\n".join(lines)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def init_dagster_storage(env: dict[str, str]) -> None:
    """Create Dagster's storage (schema) once, before several processes open it at once."""
    from dagster import DagsterInstance

    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL")}
    for key in saved:
        if key in env:
            os.environ[key] = env[key]
    try:
        with DagsterInstance.get() as instance:
            instance.get_runs_count()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_runs_finished(env: dict[str, str], timeout: float, services: Services, quiet_seconds: float = 15.0) -> bool:
    """Wait until Dagster has had no queued or running run for ``quiet_seconds`` (a finished
    processing run is followed by a dashboard refresh); True if reached within ``timeout``."""
    from dagster import DagsterInstance, RunsFilter

    from wa_pipelines.defs.ingest.sensors import IN_FLIGHT

    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    if "DAGSTER_POSTGRES_URL" in env:
        os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    try:
        with DagsterInstance.get() as instance:
            while time.monotonic() < deadline:
                services.check()
                if instance.get_runs_count(RunsFilter(statuses=IN_FLIGHT)):
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= quiet_seconds:
                    return True
                time.sleep(1)
        return False
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


def latency_figures(settings: Settings) -> str:
    """Landing-to-processed latency of processed rows: p50/p95/max in seconds."""
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(whatsapp_webhook_logs.c.received_at, whatsapp_webhook_logs.c.processed_at).where(
                    whatsapp_webhook_logs.c.processed_at.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    waits = sorted((p - r).total_seconds() for r, p in rows if p and r)
    if not waits:
        return "no processed webhooks"
    pick = lambda q: waits[min(len(waits) - 1, int(len(waits) * q))]  # noqa: E731
    return f"landing→processed over {len(waits)} webhooks: p50 {pick(0.5):.2f}s, p95 {pick(0.95):.2f}s, max {waits[-1]:.2f}s"


def run_up(settings: Settings, options: UpOptions) -> int:
    """Run the main job; returns a process exit code."""
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
    from wa_dev.demo_onboarding import DEMO_APP_ID, DEMO_JWT_SECRET

    demo_meta = not settings.meta_app_id  # no real Meta app configured: the local Graph emulator plays Meta
    if demo_meta:
        env.update({"META_APP_ID": DEMO_APP_ID, "META_CONFIG_ID": "demo-config", "REGISTER_PIN": env.get("REGISTER_PIN", "123456")})
        env.setdefault("JWT_SECRET", DEMO_JWT_SECRET)
        env["EMBEDDED_SIGNUP_MESSAGE_ORIGINS"] = f"facebook.com,{options.host}"
    env["WA_DATA_DIR"] = str(settings.data_dir.resolve())
    for key, value in {**DEMO_PROCESSING, **(DEMO_EXIT_PROCESSING if options.exit_when_done else {})}.items():
        env.setdefault(key, value)  # demo: runs roll over (and record their figures) every two minutes
    for port in (options.receiver_port, options.dagster_port):
        if not _port_free(options.host, port):
            print(f"error: port {port} on {options.host} is in use; choose another with --receiver-port/--dagster-port", file=sys.stderr)
            return 2
    from wa_pipelines.definitions import defs

    defs.get_repository_def().load_all_definitions()  # fail here, not silently in the daemon
    where = "Postgres" if settings.is_postgres else f"SQLite {settings.sqlite_path}"
    print(f"app database: {where}")
    upgrade(settings)
    print("migrations: at head")
    home = prepare_dagster_home(settings, env)
    init_dagster_storage(env)  # before the webserver and the daemon race to create it
    print(f"dagster home: {home} ({'Postgres' if settings.is_postgres else 'SQLite'} storage)")
    bind_demo_numbers(settings, options.orgs)

    emulator = None
    if demo_meta:
        from wa_dev.demo_onboarding import start_emulator

        webhook_url = f"http://{options.host}:{options.receiver_port}/api/v1/whatsapp/webhook"
        emulator = start_emulator(settings.meta_app_secret.get_secret_value(), webhook_url)
        env["GRAPH_API_BASE_URL"] = emulator.base_url
        env["EMBEDDED_SIGNUP_SDK_URL"] = f"{emulator.base_url}/sdk.js"
        print(f"Meta: no META_APP_ID set, the local Graph emulator plays Meta at {emulator.base_url}")
    bin_dir = Path(sys.executable).parent
    services = Services(env, settings.data_dir.resolve() / "logs")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)  # stop the services on kill too, not only on Ctrl-C
    try:
        services.start("receiver", [str(bin_dir / "wa-onboarding"), "serve", "--host", options.host, "--port", str(options.receiver_port)])
        services.start("dagster-webserver", [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", options.host, "-p", str(options.dagster_port)])
        services.start("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        base = f"http://{options.host}:{options.receiver_port}"
        _wait_http(f"{base}/readyz", services, 60)
        print(f"receiver: {base} (ready)")
        _wait_http(f"http://{options.host}:{options.dagster_port}/server_info", services, 120)
        print(f"dagster: http://{options.host}:{options.dagster_port} (ready)")

        url = f"{base}/api/v1/whatsapp/webhook"
        secret = settings.meta_app_secret.get_secret_value()
        corpus = load_corpus(DEFAULT_CORPUS)
        corpus_report, stream_report = SendReport(), SendReport()
        asyncio.run(send_corpus(url, secret, corpus, corpus_report))
        print(f"fixture corpus ({len(corpus)} files): {corpus_report.summary()}")
        asyncio.run(_send_one(url, secret, unclaimed_partner_added(), corpus_report))
        print(
            "operator cases on purpose: not_json.txt becomes a dead letter, and WABA "
            f"{DEMO_UNCLAIMED_WABA} is announced with PARTNER_ADDED but bound to no one (unclaimed); "
            "the dashboards' asset checks fail on both and alert (assign it with the assign_waba job)"
        )
        if options.duration > 0 and options.rate > 0:
            stream = SyntheticStream(synthetic_numbers(options.orgs))
            print(f"steady stream: {options.rate:g} webhooks/s for {options.duration:g}s over {options.orgs} organizations…")
            asyncio.run(send_stream(url, secret, stream, options.rate, options.duration, stream_report))
            print(f"steady stream: {stream_report.summary()}")
        if emulator is not None:
            demo_onboardings(base, url, emulator, settings.meta_app_secret.get_secret_value())
        print("waiting for Dagster to process everything…")
        done = wait_processed(settings, options.wait_seconds, services)
        engine = create_sync_engine(settings)
        with engine.connect() as conn:
            summary = stored_summary(conn)
        engine.dispose()
        print("\nstored (everything in this database, earlier runs included):")
        print(format_summary(summary))
        print(f"  {latency_figures(settings)}")
        if not done:
            print(f"warning: webhooks still pending after {options.wait_seconds:.0f}s; see {services.log_dir}")
        if emulator is not None:
            from wa_dev.demo_onboarding import demo_token

            print(f"  onboarding page   {base}/onboarding?token={demo_token('newcomer')}  (try the button yourself)")
        print(
            f"\nwhere to look:\n"
            f"  Dagster UI        http://{options.host}:{options.dagster_port}  (Runs: process_webhooks; Assets: lineage to the dashboards)\n"
            f"  receiver          {base}/docs, {base}/readyz\n"
            f"  logs              {services.log_dir}\n"
            f"  stored rows       wa-onboarding status"
        )
        lost = corpus_report.gave_up + stream_report.gave_up
        if options.exit_when_done:
            # let the processing run end by itself (idle exit) so it records SUCCESS and its
            # figures, and the dashboard refresh that follows it
            idle = float(env["PROCESSING_IDLE_EXIT_SECONDS"])
            print(f"waiting for the Dagster runs to finish (processing runs end after {idle:g}s idle)…")
            if not wait_runs_finished(env, float(env["PROCESSING_RUN_MAX_SECONDS"]) + 60, services):
                print("warning: a Dagster run was still in flight; stopping it marks it failed")
            print(operations_report(settings))
            return 0 if done and not lost else 1
        print("\nrunning; press Ctrl-C to stop.")
        while True:
            services.check()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        services.stop()
        if emulator is not None:
            emulator.stop()
