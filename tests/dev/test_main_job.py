"""The main job end to end: `wa-dev up` starts the receiver, Dagster's webserver and
daemon, replays signed webhooks, and sensor-launched runs process them, on the embedded
default (SQLite) and on Postgres (app + dagster-postgres storage)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_URL
from tests.dev.test_simulate import free_port
from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import whatsapp_connections, whatsapp_messages, whatsapp_onboarding, whatsapp_webhook_logs
from wa_core.settings import Settings
from wa_dev.simulate import load_corpus

# the two runs of the whole stack (receiver, Dagster webserver, daemon, code servers, runs) never
# run at once on a 2-core machine: under pytest-xdist (bin/test: --dist loadgroup) they share a
# worker, and as the largest group they are handed out first, so the rest of the suite runs on
# the other worker meanwhile
pytestmark = pytest.mark.xdist_group("main_job")

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "wa-dev")


def run_up(env: dict[str, str]) -> subprocess.CompletedProcess:
    args = [CLI, "up", "--exit-when-done", "--rate", "5", "--duration", "4", "--orgs", "2",
            "--receiver-port", str(free_port()), "--dagster-port", str(free_port()), "--wait-seconds", "600"]
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "DAGSTER_POSTGRES_URL", "REDIS_URL")}
    # up returns as soon as everything is processed; the bound is only there so that a hang fails
    # instead of blocking CI (a loaded 2-core machine needs minutes for the whole stack). Whatever
    # ends the wait (the bound, pytest-timeout, Ctrl-C), up is sent SIGTERM so it stops every
    # service it started (each runs in a session of its own, out of reach of a group kill), and
    # only then killed.
    proc = subprocess.Popen(args, cwd=ROOT, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=1100)
    except BaseException:
        proc.terminate()
        try:
            proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def check_stored(settings: Settings, output: str) -> None:
    corpus = len(load_corpus())
    assert "where to look" in output and "Dagster UI" in output
    engine = create_sync_engine(settings)
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(whatsapp_webhook_logs.c.status, sa.func.count()).group_by(whatsapp_webhook_logs.c.status)).all())
        messages = conn.execute(sa.select(sa.func.count()).select_from(whatsapp_messages)).scalar_one()
        connections = conn.execute(sa.select(whatsapp_connections.c.waba_id, whatsapp_connections.c.status)).all()
    # every delivery landed: corpus + the unclaimed WABA's PARTNER_ADDED + 5/s × 4 s + the demo
    # onboardings' 2 PARTNER_ADDED and 2 messages
    assert sum(states.values()) == corpus + 1 + 20 + 4
    assert states.get("pending", 0) == 0
    assert states.get("dead") == 1  # the corpus's non-JSON body
    # the corpus's number nobody onboarded and the deliberately unclaimed WABA, waiting for a retry
    assert states.get("failed") == 2
    assert states["processed"] == corpus + 1 + 20 + 4 - 3
    assert "Connected" in output  # both demo onboardings went through the page (or its API calls)
    with engine.connect() as conn:
        onboardings = conn.execute(sa.select(whatsapp_onboarding.c.status, whatsapp_onboarding.c.is_coexistence)).all()
        demo_messages = conn.execute(sa.select(sa.func.count()).select_from(whatsapp_messages).where(whatsapp_messages.c.wamid.like("wamid.DEMO%"))).scalar_one()
    assert sorted(onboardings) == [("completed", False), ("completed", True)]
    engine.dispose()
    assert demo_messages == 2  # a customer message reached each newly connected number
    assert messages > 40
    # the phone-family fields' state is in the report (wa_core.reporting.phone_fields)
    for line in ("calls           completed=1, connect=1", "group_members   member=1", "ad_conversions  Purchase=1",
                 "partner_solutions INITIATED=1", "some_future_field=1"):
        assert line in output, line
    assert dict(connections)["100000000000001"] in {"active", "inactive", "offboarded", "disabled"}
    # the WABA-family fixtures' state is stored and reported
    assert "templates       APPROVED=1, REJECTED=1, unknown=2" in output and "waba_events" in output
    # the event feed heard of the messages, and the media messages have their download rows
    assert "message.received=" in output and "template.status_changed=" in output
    assert "\n  media " in output
    # the demo numbers have business tokens the Graph emulator accepts: their media downloads
    assert "media           stored=" in output and "pending" not in output.split("media           ")[1].splitlines()[0]
    # the demo's admin token and a JWT of an organization with data are printed
    assert "Bearer demo_admin_token_not_real" in output and "read API (acme)" in output
    assert "landing→processed, this start's" in output
    # every number's business token was checked (the demo's at start, the onboarded ones after their follow-up)
    tokens = output.split("\n  tokens          ")[1].splitlines()[0]
    assert "valid" in tokens and "not checked yet" not in tokens, tokens


@pytest.mark.timeout(1200)
def test_main_job_on_the_embedded_default(tmp_path: Path) -> None:
    proc = run_up({"WA_DATA_DIR": str(tmp_path), "META_APP_SECRET": "e2e_secret"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SQLite" in proc.stdout
    check_stored(Settings(data_dir=tmp_path, database_url=None), proc.stdout)
    # Dagster's own SQLite storage recorded successful sensor-launched processing runs
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from dagster import AssetCheckKey, AssetKey

    os.environ["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    try:
        with DagsterInstance.get() as instance:
            runs = instance.get_runs(RunsFilter(job_name="process_webhooks"))
            assert runs and all(r.status == DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
            assert all(r.tags.get("wa/launched_by") == "pending_webhooks_sensor" for r in runs)
            # the runs recorded their figures, and the dashboard was refreshed after them
            assert instance.get_latest_materialization_event(AssetKey("whatsapp_messages")) is not None
            dashboard = instance.get_latest_materialization_event(AssetKey("org_whatsapp_status"))
            assert dashboard is not None
            # refreshed after the first processing run (then at most every 5 minutes): it counts
            # what was processed by then
            assert dashboard.asset_materialization.metadata["messages_in_24h"].value > 0
            # all six dashboards materialised; the checks caught the deliberate operator cases
            for key in ("onboarding_timeline", "failed_webhooks", "token_health", "webhook_lag", "number_health"):
                assert instance.get_latest_materialization_event(AssetKey(key)) is not None, key
            checks = {
                name: instance.event_log_storage.get_asset_check_execution_history(
                    AssetCheckKey(AssetKey(asset), name), limit=1
                )[0]
                for asset, name in (("failed_webhooks", "dead_letters_24h"), ("onboarding_timeline", "unclaimed_wabas"))
            }
            for name, record in checks.items():
                evaluation = record.event.dagster_event.event_specific_data
                assert evaluation.passed is False, name
    finally:
        del os.environ["DAGSTER_HOME"]
    # an alert in the log for each (the daemon's log holds the runs' and sensors' output)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    assert "ALERT dead_letter:" in logs and "ALERT unclaimed_waba:100000000000777" in logs


@pytest.fixture()
def fresh_pg_db() -> str:
    """The URL of a database that does not exist yet: `up` creates it (and its Dagster one)."""
    name = f"wa_test_e2e_{uuid.uuid4().hex[:8]}"
    yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for db in (name, f"{name}_dagster"):  # both created by `up`
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@pytest.mark.timeout(1200)
def test_main_job_on_postgres_with_dagster_postgres_storage(tmp_path: Path, fresh_pg_db: str) -> None:
    proc = run_up({"WA_DATA_DIR": str(tmp_path), "DATABASE_URL": fresh_pg_db, "META_APP_SECRET": "e2e_secret"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Postgres storage" in proc.stdout and "did not exist: created it" in proc.stdout
    check_stored(Settings(data_dir=tmp_path, database_url=fresh_pg_db), proc.stdout)
    dagster_db = make_url(fresh_pg_db).set(database=make_url(fresh_pg_db).database + "_dagster")
    with psycopg.connect(dagster_db.render_as_string(hide_password=False)) as conn:
        runs = conn.execute("SELECT pipeline_name, status FROM runs").fetchall()
    # sensor-launched runs completed on dagster-postgres storage, then the dashboard refresh
    assert {status for job, status in runs if job == "process_webhooks"} == {"SUCCESS"}, runs
    assert ("refresh_dashboards", "SUCCESS") in runs, runs
