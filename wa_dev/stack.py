"""The local stack of the main job: the receiver, the Dagster webserver and daemon as child
process groups (:class:`Services`), Dagster's home and storage, and the waits on them.

On the embedded default (no ``DATABASE_URL``) Dagster keeps its own SQLite storage in
``WA_DATA_DIR/dagster_home``. With a Postgres ``DATABASE_URL`` Dagster uses a sibling database
``<name>_dagster`` on the same server (``DAGSTER_POSTGRES_URL`` overrides), created if missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import sqlalchemy as sa

from wa_core.db.engine import create_sync_engine
from wa_core.db.migrate import ensure_postgres_database, first_line
from wa_core.db.schema import whatsapp_webhook_logs
from wa_core.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound (TCP) right now."""
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


def prepare_app_database(settings: Settings) -> str | None:
    """Create the app's Postgres database when it is missing (like Dagster's); None when the
    database is there (or embedded SQLite), else one line saying what happened: ``created
    …`` or ``error: …`` with how to fix it (no server, no CREATEDB right, a bad URL)."""
    import psycopg

    if not settings.is_postgres:
        return None
    from sqlalchemy.engine import make_url

    try:
        name = make_url(settings.database_url).database
        if not name:
            return "error: DATABASE_URL names no database (postgresql://user@host:5432/<name>)"
        return f"app database {name!r} did not exist: created it" if ensure_postgres_database(settings.database_url) else None
    except (psycopg.Error, ValueError, sa.exc.ArgumentError) as exc:
        return f"error: cannot use or create the app database of DATABASE_URL ({first_line(exc)}); check the server is up and the user may CREATEDB, or create the database yourself"


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

    def _proc(self, name: str) -> subprocess.Popen | None:
        return next((proc for n, proc in self.procs if n == name), None)

    def interrupt(self, name: str) -> None:
        """SIGTERM the main process of service ``name`` alone, not its group (no-op when it is
        not running): the Dagster daemon then stops launching runs and asks its code server to
        shut down, which that server does once the runs it executes have ended."""
        proc = self._proc(name)
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def running(self, name: str) -> bool:
        """True while the main process of service ``name`` runs."""
        proc = self._proc(name)
        return proc is not None and proc.poll() is None

    def group_alive(self, name: str) -> bool:
        """True while any process of service ``name``'s process group is left (the Dagster
        daemon's code server and its run workers stay in the daemon's group after it exits)."""
        proc = self._proc(name)
        if proc is None:
            return False
        proc.poll()  # reap the leader if it exited: a zombie would keep the group "alive"
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        """SIGTERM each process group, then SIGKILL the groups with a process left after 10 s
        (a group outlives its leader: the Dagster daemon's code server and run workers)."""
        for name, proc in self.procs:
            if self.group_alive(name):
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self.group_alive(name) for name, _ in self.procs):
            time.sleep(0.1)
        for name, proc in self.procs:
            if self.group_alive(name):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def wait_http(url: str, services: Services, timeout: float) -> None:
    """Poll ``url`` every 0.5 s until it answers 200; raises ``RuntimeError`` when a service
    exited or after ``timeout`` seconds."""
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


class _DagsterEnv:
    """``DAGSTER_HOME``/``DAGSTER_POSTGRES_URL`` of ``env`` in ``os.environ`` for a ``with``
    block (what :meth:`DagsterInstance.get` reads), restored afterwards."""

    KEYS = ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL")

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.KEYS}
        for key in self.KEYS:
            if key in self.env:
                os.environ[key] = self.env[key]

    def __exit__(self, *exc: object) -> None:
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def end_runs_left_behind(env: dict[str, str], why: str) -> int:
    """Mark every run of Dagster's storage in ``env`` that is still queued, starting, started
    or canceling as canceled, with ``why`` in its event log; returns how many. Called when
    ``up`` starts (before the daemon: stale runs of a stack stopped mid-launch would hold
    their shard's queue slots until run monitoring fails them, ~3 min) and after it has
    stopped its services (their run processes died with them)."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from wa_pipelines.defs.ingest.sensors import IN_FLIGHT

    with _DagsterEnv(env), DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(statuses=[*IN_FLIGHT, DagsterRunStatus.CANCELING]))
        for run in runs:
            instance.report_run_canceled(run, message=why)
    return len(runs)


#: how long a stop waits for the runs in flight to end canceled before it stops the services
#: anyway (a processing run ends within its batch; a run still loading the code location, up to
#: a minute or two on a loaded 2-core machine, ends once loaded)
STOP_RUNS_TIMEOUT = 240.0


def cancel_runs_in_flight(env: dict[str, str], services: Services, timeout: float = STOP_RUNS_TIMEOUT) -> int:
    """End the runs in flight of a stack that stops as CANCELED, before its services stop: a run
    worker killed with no termination request records FAILURE (and the next start's
    ``run_failure_alerts`` raises ``run_failed`` for it). Returns how many runs it ended or
    asked to end.

    The Dagster daemon alone is sent SIGTERM first, so that it launches no new run; its code
    server, which executes the runs, keeps answering until they have ended, then exits. Meanwhile
    every run in flight (one the daemon launches before it exits included) is ended:

    - a started run gets a termination request through the instance's run coordinator, as the
      UI's Terminate sends it: its run worker interrupts the op (which releases what it holds)
      and ends the run CANCELED;
    - a queued, not yet started or starting run is marked CANCELED at once. Its worker, if it is
      still loading the code location, then does not start it. (A termination request would not
      do: the worker of a CANCELING run that has not started ignores it and exits, and Dagster's
      code server then marks the run FAILURE.) If the worker had just started the run, the run
      shows STARTED again and is sent a termination request like any started run.

    Waits until no process of the daemon's group is left (the daemon, its code server, the run
    workers), or ``timeout`` seconds. What is left unfinished :func:`end_runs_left_behind` marks
    canceled once the services have stopped. Raises what Dagster's storage raises.
    """
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from wa_pipelines.defs.ingest.sensors import IN_FLIGHT

    services.interrupt("dagster-daemon")
    ended: set[str] = set()
    terminating: set[str] = set()  # sent a termination request
    deadline = time.monotonic() + timeout
    with _DagsterEnv(env), DagsterInstance.get() as instance:
        while True:
            for run in instance.get_runs(RunsFilter(statuses=IN_FLIGHT)):
                if run.status != DagsterRunStatus.STARTED:
                    instance.report_run_canceled(run, message="`wa-dev up` stopped before this run started")
                elif run.run_id not in terminating:
                    terminating.add(run.run_id)
                    try:
                        instance.run_coordinator.cancel_run(run.run_id)
                    except Exception:  # noqa: BLE001 - its code server is gone: end_runs_left_behind ends the run
                        pass
                else:  # its worker's start overwrote the CANCELING our request had set: set it again
                    instance.report_run_canceling(run)
                ended.add(run.run_id)
            if not services.group_alive("dagster-daemon") or time.monotonic() >= deadline:
                return len(ended)
            time.sleep(0.5)


def stop_stack(env: dict[str, str], services: Services, timeout: float = STOP_RUNS_TIMEOUT) -> list[str]:
    """The stop of ``up`` (Ctrl-C, SIGTERM, or the end of ``--exit-when-done``): the runs in
    flight end CANCELED (:func:`cancel_runs_in_flight`, bounded by ``timeout`` seconds; a second
    Ctrl-C cuts it short), then the services stop and any run still unfinished is marked canceled
    (:func:`end_runs_left_behind`). Nothing raises; returns the lines to print."""
    lines: list[str] = []
    try:
        asked = cancel_runs_in_flight(env, services, timeout)
    except KeyboardInterrupt:
        lines.append("stopping now (interrupted again) without waiting for Dagster's runs to end")
    except Exception as exc:  # noqa: BLE001 - the stop goes on; the runs are ended below
        lines.append(f"warning: could not end Dagster's runs before the stop ({type(exc).__name__}: {str(exc)[:200]})")
    else:
        if asked:
            lines.append(f"dagster: canceled {asked} run(s) in flight at the stop")
    services.stop()
    try:
        left = end_runs_left_behind(env, "`wa-dev up` stopped while this run was in flight")
    except Exception as exc:  # noqa: BLE001 - the stop goes on; the next start cleans up
        lines.append(f"warning: could not check Dagster's runs at the stop ({type(exc).__name__}); the next start cancels what is left")
    else:
        if left:
            lines.append(f"dagster: marked {left} run(s) still unfinished after the stop as canceled")
    return lines


def processing_run_windows(env: dict[str, str], since: float) -> list[tuple[float, float]]:
    """When a ``process_webhooks`` run created after ``since`` was up: ``(start, end)`` in
    Unix seconds (a run still going ends now), from Dagster's run records."""
    from dagster import DagsterInstance, RunsFilter

    now = time.time()
    with _DagsterEnv(env), DagsterInstance.get() as instance:
        records = instance.get_run_records(RunsFilter(job_name="process_webhooks", created_after=datetime.fromtimestamp(since, timezone.utc)))
    return sorted((r.start_time, r.end_time or now) for r in records if r.start_time)


def wait_daemon_ready(env: dict[str, str], services: Services, since: float, timeout: float) -> bool:
    """Wait until the Dagster daemon's sensor and run-queue daemons have sent a heartbeat
    after ``since`` (Unix seconds): its code location is loaded and it can launch runs.
    True if reached within ``timeout`` seconds; raises ``RuntimeError`` when a service exited."""
    from dagster import DagsterInstance

    deadline = time.monotonic() + timeout
    with _DagsterEnv(env), DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            services.check()
            beats = instance.get_daemon_heartbeats()
            if all(k in beats and beats[k].timestamp >= since for k in ("SENSOR", "QUEUED_RUN_COORDINATOR")):
                return True
            time.sleep(1)
    return False


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

