"""The main job's promises a new user relies on, each without starting the whole stack: a
missing app database is created (or refused in one line), the demo's admin token and JWTs,
the demo's Meta ids the doctor accepts, media for the demo numbers, runs left in flight by a
stopped stack and a stop that ends the runs in flight canceled, the latency lines, and
definitions that load without warning noise. The whole stack runs in test_main_job.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from tests.conftest import ADMIN_URL
from tests.helpers import land
from wa_core.db.schema import utcnow, whatsapp_configs, whatsapp_connections, whatsapp_webhook_logs
from wa_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


# --- item: DATABASE_URL naming a database that does not exist ---------------------------
def test_a_missing_app_database_is_created_like_dagsters() -> None:
    from wa_dev.stack import prepare_app_database

    name = f"wa_test_up_{uuid.uuid4().hex[:8]}"
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        assert prepare_app_database(Settings(database_url=url)) == f"app database {name!r} did not exist: created it"
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
        assert prepare_app_database(Settings(database_url=url)) is None  # there now: nothing to say
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unusable_database_url_is_refused_at_once_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from wa_dev.stack import port_free
    from wa_dev.up import UpOptions, run_up

    from tests.dev.test_simulate import free_port

    dead = free_port()
    assert port_free("127.0.0.1", dead)  # nothing listens there
    settings = Settings(database_url=f"postgresql://postgres@127.0.0.1:{dead}/wa", data_dir=tmp_path)
    options = UpOptions(receiver_port=free_port(), dagster_port=free_port())
    assert run_up(settings, options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot use or create the app database of DATABASE_URL"), err
    assert "Traceback" not in "\n".join(err)


# --- item: the demo's credentials ----------------------------------------------------------
def test_the_demo_sets_and_prints_an_admin_token_and_a_jwt_of_an_organization_with_data(tmp_path: Path, monkeypatch) -> None:
    from wa_dev.demo_onboarding import DEMO_JWT_SECRET
    from wa_dev.up import DEMO_ADMIN_TOKEN, UpOptions, demo_credentials, demo_environment

    for key in ("ADMIN_API_TOKEN", "JWT_SECRET", "META_APP_ID"):
        monkeypatch.delenv(key, raising=False)
    settings, env, demo_meta = demo_environment(Settings(database_url=None, data_dir=tmp_path), UpOptions())
    assert env["ADMIN_API_TOKEN"] == DEMO_ADMIN_TOKEN and settings.admin_api_token.get_secret_value() == DEMO_ADMIN_TOKEN
    text = demo_credentials(env, "http://127.0.0.1:8000", demo_meta)
    assert f"Bearer {DEMO_ADMIN_TOKEN}' http://127.0.0.1:8000/api/admin/whatsapp/status" in text
    acme = text.split("read API (acme)")[1].split("Bearer ")[1].split("'")[0]
    assert jwt.decode(acme, DEMO_JWT_SECRET, algorithms=["HS256"])["org_id"] == "acme"  # a fixture organization with data
    # an operator's own admin token is kept and never printed
    monkeypatch.setenv("ADMIN_API_TOKEN", "operator-token")
    settings, env, _ = demo_environment(Settings(database_url=None, data_dir=tmp_path), UpOptions())
    assert env["ADMIN_API_TOKEN"] == "operator-token" and "operator-token" not in demo_credentials(env, "http://h", demo_meta)


# --- item: the doctor is all green on the demo ---------------------------------------------
def test_the_demos_meta_settings_pass_the_doctors_onboarding_page_check(tmp_path: Path, monkeypatch) -> None:
    from wa_core.doctor import local
    from wa_core.doctor.model import run_group
    from wa_dev.up import UpOptions, demo_environment

    for key in ("META_APP_ID", "META_CONFIG_ID"):
        monkeypatch.delenv(key, raising=False)
    _, env, demo_meta = demo_environment(Settings(database_url=None, data_dir=tmp_path), UpOptions())
    assert demo_meta
    for key in ("META_APP_ID", "META_CONFIG_ID"):  # what the receiver's doctor reads: the child environment
        monkeypatch.setenv(key, env[key])
    [check] = run_group("onboarding_page", lambda: local.page_checks(Settings(database_url=None, data_dir=tmp_path)))
    assert check.status == "ok", check


# --- item: media of the demo numbers downloads ---------------------------------------------
def test_the_demo_numbers_get_tokens_the_emulator_accepts_and_their_media_downloads(engine: Engine, settings: Settings) -> None:
    from wa_core.meta.crypto import TokenCipher
    from wa_dev.emulator import GraphEmulator, serve_in_thread
    from wa_dev.feed import CORPUS_BINDINGS, bind_demo_numbers, give_demo_numbers_tokens

    bind_demo_numbers(settings, 1)
    emulator = GraphEmulator(app_id="123456", app_secret=settings.meta_app_secret.get_secret_value())
    base, stop = serve_in_thread(emulator)
    try:
        assert give_demo_numbers_tokens(settings, emulator, 1, base) == len(CORPUS_BINDINGS) + 1
        with engine.connect() as conn:  # checked like a freshly onboarded number's: never "not checked yet"
            assert set(conn.execute(sa.select(whatsapp_configs.c.token_health)).scalars()) == {"valid"}
        cipher = TokenCipher.from_hex(settings.token_encryption_key)
        waba, phone = CORPUS_BINDINGS[1][2], CORPUS_BINDINGS[1][3].phone_number_id
        with engine.connect() as conn:
            row = conn.execute(sa.select(whatsapp_connections).where(whatsapp_connections.c.waba_id == waba)).one()
        token = cipher.decrypt(row.business_token_encrypted, row.id)
        assert token in emulator.tokens_for(waba)
        # any media id of a demo number exists (the corpus's and the stream's ids were never added)
        info = httpx.get(f"{base}/v21.0/123456789012345", params={"phone_number_id": phone}, headers={"Authorization": f"Bearer {token}"})
        assert info.status_code == 200, info.text
        body = httpx.get(info.json()["url"], headers={"Authorization": f"Bearer {token}"})
        assert body.status_code == 200 and body.content.startswith(b"\xff\xd8")
        # another number's unknown media id is still unknown (100), as at Meta
        other = httpx.get(f"{base}/v21.0/987654321", params={"phone_number_id": "299999999999999"}, headers={"Authorization": f"Bearer {token}"})
        assert other.status_code == 400 and other.json()["error"]["code"] == 100
        assert give_demo_numbers_tokens(settings, emulator, 1) == len(CORPUS_BINDINGS) + 1  # a second start: idempotent
    finally:
        stop()


# --- item: runs left in flight ---------------------------------------------------------------
def test_runs_left_in_flight_are_canceled_and_finished_ones_kept(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from wa_dev.stack import end_runs_left_behind

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    env = {"DAGSTER_HOME": str(home)}
    statuses = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        ids = {s: instance.add_run(DagsterRun(job_name="process_webhooks", run_id=str(uuid.uuid4()), status=s)).run_id for s in statuses}
    monkeypatch.delenv("DAGSTER_HOME")
    assert end_runs_left_behind(env, "left by a test") == 3
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        now = {s: instance.get_run_by_id(run_id).status for s, run_id in ids.items()}
    assert now == {DagsterRunStatus.STARTING: DagsterRunStatus.CANCELED, DagsterRunStatus.STARTED: DagsterRunStatus.CANCELED,
                   DagsterRunStatus.CANCELING: DagsterRunStatus.CANCELED, DagsterRunStatus.SUCCESS: DagsterRunStatus.SUCCESS,
                   DagsterRunStatus.FAILURE: DagsterRunStatus.FAILURE}
    monkeypatch.delenv("DAGSTER_HOME")
    assert end_runs_left_behind(env, "again") == 0


# --- item: a stop ends the runs in flight canceled, not failed -------------------------------
def _wait_until(condition, services=None) -> object:
    """Poll ``condition()`` every 0.2 s until it returns something truthy (which is returned);
    a service of ``services`` that exits fails the test at once, pytest-timeout bounds the rest."""
    while not (found := condition()):
        if services is not None:
            services.check()
        time.sleep(0.2)
    return found


@pytest.mark.timeout(600)
def test_a_stop_ends_the_runs_in_flight_canceled_and_none_failed(tmp_path: Path, monkeypatch) -> None:
    """A real Dagster daemon (the project's dagster.yaml) runs a run that lives until terminated
    (like the processing and delivery runs) and a run held in STARTING while its worker loads
    the code location (tests/dev/stop_location.py); ``stop_stack``, what ``up`` runs at a stop,
    ends both CANCELED, none FAILURE, and leaves no process of the daemon behind."""
    import shutil
    import threading

    from dagster import DagsterInstance, DagsterRunStatus

    from wa_dev.stack import Services, init_dagster_storage, stop_stack

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster" / "dagster.yaml", home / "dagster.yaml")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_file:\n      relative_path: {ROOT / 'tests' / 'dev' / 'stop_location.py'}\n"
                         "      location_name: stop_test\n")
    gate = tmp_path / "gate"
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    env = {**os.environ, "DAGSTER_HOME": str(home), "STOP_TEST_GATE": str(gate)}
    init_dagster_storage(env)
    services = Services(env, tmp_path / "logs")
    services.start("dagster-daemon", [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)])
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    stopper: threading.Thread | None = None
    try:
        with DagsterInstance.get() as instance:
            def status(job: str):
                runs = instance.get_runs()
                return next((r.status for r in runs if r.job_name == job), None)

            _wait_until(lambda: status("until_terminated") == DagsterRunStatus.STARTED, services)
            gate.touch()  # the next run's worker waits at import: its run stays STARTING
            _wait_until(lambda: status("slow_start") == DagsterRunStatus.STARTING and Path(f"{gate}.waiting").exists(), services)
            lines: list[str] = []
            stopper = threading.Thread(target=lambda: lines.extend(stop_stack(env, services, timeout=500)))
            stopper.start()
            # the started run ends CANCELED (its worker answered the termination request), the
            # starting one is marked CANCELED at once (the daemon exits meanwhile: not checked)
            _wait_until(lambda: not stopper.is_alive()
                        or (status("until_terminated") == DagsterRunStatus.CANCELED and status("slow_start") == DagsterRunStatus.CANCELED))
            waited = stopper.is_alive()  # the stop waits for the worker still loading the code location
            gate.unlink()  # it has loaded it now: it does not start the canceled run, and exits
            stopper.join()
            runs = {r.job_name: r.status for r in instance.get_runs()}
        assert runs == {"until_terminated": DagsterRunStatus.CANCELED, "slow_start": DagsterRunStatus.CANCELED}, runs
        assert waited and "dagster: canceled 2 run(s) in flight at the stop" in lines, lines
        assert not services.group_alive("dagster-daemon")  # the code server and the run workers are gone too
    finally:
        gate.unlink(missing_ok=True)
        if stopper is not None and stopper.is_alive():
            stopper.join()
        services.stop()


# --- item: what the latency figure means -----------------------------------------------------
def test_the_latency_lines_separate_the_webhooks_that_waited_for_a_run_launch(engine: Engine, settings: Settings) -> None:
    from wa_dev.report import latency_figures

    t0 = utcnow()
    waits = {t0: 9.0, t0 + timedelta(seconds=1): 8.0, t0 + timedelta(seconds=20): 0.05, t0 + timedelta(seconds=21): 0.07}
    for received, wait in waits.items():
        row = land(engine, b'{"object":"whatsapp_business_account","entry":[]}', received_at=received)
        with engine.begin() as conn:
            conn.execute(sa.update(whatsapp_webhook_logs).where(whatsapp_webhook_logs.c.id == row)
                         .values(status="processed", processed_at=received + timedelta(seconds=wait)))
    window = [((t0 + timedelta(seconds=10)).timestamp(), (t0 + timedelta(seconds=60)).timestamp())]  # the run was up from +10 s
    text = latency_figures(settings, t0.timestamp() - 1, window)
    lines = text.splitlines()
    assert lines[0].startswith("  landing→processed, this start's 4 webhooks: p50 8.00s")
    assert "2 landed while a processing run was up (as in production): p50 0.07s, p95 0.07s, max 0.07s" in lines[1]
    assert "2 landed while none was and waited for a run's launch: p50 9.00s, p95 9.00s, max 9.00s" in lines[2]
    # rows received before this start are not this start's
    assert "this start's 2 webhooks" in latency_figures(settings, (t0 + timedelta(seconds=5)).timestamp(), window)


# --- item: no warning noise at start-up --------------------------------------------------------
def test_the_definitions_load_without_warnings() -> None:
    code = "from wa_pipelines.definitions import defs; defs.get_repository_def().load_all_definitions()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr


# --- item: a plain `up` prints the dashboards once a whole refresh has landed -------------------
def test_the_dashboards_count_as_refreshed_only_when_all_are_newer_than_the_start(engine: Engine, settings: Settings) -> None:
    from wa_core.db.schema import dashboard_snapshots
    from wa_core.reporting.dashboards import DASHBOARDS
    from wa_dev.report import dashboards_refreshed_since, operations_report

    start = utcnow()
    old = start - timedelta(hours=1)
    with engine.begin() as conn:  # an earlier start's refresh
        conn.execute(sa.insert(dashboard_snapshots), [{"asset_key": d.key, "computed_at": old, "payload": {}} for d in DASHBOARDS])
    assert not dashboards_refreshed_since(settings, start.timestamp())
    for i, d in enumerate(DASHBOARDS):  # this start's refresh, one dashboard after the other
        assert not dashboards_refreshed_since(settings, start.timestamp())
        with engine.begin() as conn:
            conn.execute(sa.update(dashboard_snapshots).where(dashboard_snapshots.c.asset_key == d.key).values(computed_at=start + timedelta(seconds=i + 1)))
    assert dashboards_refreshed_since(settings, start.timestamp())
    text = operations_report(settings)
    assert "dashboards (materialised by refresh_dashboards" in text and "open alerts" in text


# --- item: the report's commands run as printed ------------------------------------------------
def test_the_where_to_look_status_command_is_a_path_that_exists_from_the_repository_root(tmp_path: Path) -> None:
    """`bin/up` does not put .venv/bin on PATH: the printed status command is the relative path."""
    from wa_dev.report import where_to_look

    [line] = [line for line in where_to_look("127.0.0.1", 3000, "http://127.0.0.1:8000", tmp_path).splitlines() if "stored rows" in line]
    command = line.split()[2]
    assert command == ".venv/bin/wa-onboarding" and line.split()[3] == "status"
    assert (ROOT / command).exists()


def test_the_readmes_demo_curls_use_ups_admin_token_and_routes_the_app_serves(settings: Settings) -> None:
    """The README's admin curls (status, doctor) carry the token `up` sets and name real routes."""
    import re

    from wa_dev.up import DEMO_ADMIN_TOKEN
    from wa_webhook.app import create_app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    curls = re.findall(r"curl -H 'Authorization: Bearer (\S+)' http://127\.0\.0\.1:8000(/api/admin/\S+)`", readme)
    assert {path for _, path in curls} >= {"/api/admin/whatsapp/status", "/api/admin/whatsapp/doctor"}
    routes = set(create_app(settings).openapi()["paths"])
    assert all(token == DEMO_ADMIN_TOKEN and path in routes for token, path in curls), curls
