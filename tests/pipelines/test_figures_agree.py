"""One definition per figure: the Dagster UI (asset and check metadata, snapshots), the
processing sensor, the admin API, ``check-connection`` and ``wa-onboarding status`` agree on
claimable, unrouted, dead and token state for one mixed data set.

The data set: in Acme's lane a row leased by a live run (in flight, not claimable), a failed
row whose retry is not due, a claimable row routed by its WABA only, a dead row; a WABA bound
to no one with two pending rows, a failed row whose retry is due and a dead row (all
unrouted); a WABA bound to Globex after its rows landed (a dead and a pending row, no
organization recorded: Globex's from then on); tokens valid, expiring soon, expired (recorded
valid) and never checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, SkipReason, build_sensor_context
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA
from tests.webhook.test_onboarding import auth
from wa_core.backlog import UNROUTED_LANE
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import utcnow, whatsapp_configs, whatsapp_webhook_logs
from wa_core.processing.claim import count_claimable
from wa_core.settings import Settings
from wa_pipelines.definitions import defs
from wa_pipelines.defs.ingest.sensors import pending_webhooks_sensor
from wa_pipelines.resources import AppDatabase
from wa_webhook.app import create_app
from wa_webhook.cli import cmd_status

ACME_PHONE2, ACME_PHONE3 = "200000000000011", "200000000000012"
STRANGER_WABA = "100000000000079"  # bound to no one
LATE_WABA = "100000000000080"  # bound to Globex after its rows landed
ADMIN = "admin-token-for-agreement"
M, DAY = timedelta(minutes=1), timedelta(days=1)

CLAIMABLE = {"acme": 1, "globex": 1, None: 3}
DEAD = {"acme": 1, "globex": 1, None: 1}
TOKENS = {ACME_PHONE: "valid", ACME_PHONE2: "expiring_soon", ACME_PHONE3: "not_checked", GLOBEX_PHONE: "expired"}


def _row(conn, waba_id: str | None, status: str, org: uuid.UUID | None = None, **values: Any) -> int:
    body = f"webhook {uuid.uuid4()}".encode()
    now = utcnow()
    row = dict(
        body=body, body_sha256=hashlib.sha256(body).hexdigest(), body_size=len(body), signature_status="valid",
        waba_id=waba_id, status=status, attempts=1, received_at=now - 5 * M, updated_at=now, organization_id=org,
    )
    return conn.execute(sa.insert(whatsapp_webhook_logs).values(**{**row, **values}).returning(whatsapp_webhook_logs.c.id)).scalar_one()


@pytest.fixture()
def mixed(engine: Engine) -> dict[str, uuid.UUID]:
    now = utcnow()
    with engine.begin() as conn:
        acme = ensure_organization(conn, "acme", "Acme Store")
        globex = ensure_organization(conn, "globex", "Globex Ltd")
        numbers = [PhoneNumber(ACME_PHONE, "15550000001"), PhoneNumber(ACME_PHONE2, "15550000011"), PhoneNumber(ACME_PHONE3, "15550000012")]
        bind_waba(conn, acme, ACME_WABA, numbers, status="active")
        bind_waba(conn, globex, GLOBEX_WABA, [PhoneNumber(GLOBEX_PHONE, "15550000002")], status="active")
        cfg = whatsapp_configs.c
        for phone, values in {
            ACME_PHONE: dict(token_health="valid", token_expires_at=now + 30 * DAY),
            ACME_PHONE2: dict(token_health="valid", token_expires_at=now + 2 * DAY),  # expiring soon since
            GLOBEX_PHONE: dict(token_health="valid", token_expires_at=now - M),  # recorded valid, expired since
        }.items():
            conn.execute(sa.update(whatsapp_configs).where(cfg.phone_number_id == phone).values(token_checked_at=now - DAY, **values))

        _row(conn, ACME_WABA, "pending", locked_until=now + 5 * M)  # in flight
        _row(conn, ACME_WABA, "failed", acme, next_attempt_at=now + 10 * M)  # waiting retry
        _row(conn, ACME_WABA, "pending", attempts=0)  # claimable, routed by its WABA only
        _row(conn, ACME_WABA, "dead", acme, error_kind="handler_error")
        for _ in range(2):
            _row(conn, STRANGER_WABA, "pending", attempts=0)
        _row(conn, STRANGER_WABA, "failed", error_kind="unroutable", next_attempt_at=now - M)  # due: claimable
        _row(conn, None, "dead", error_kind="invalid_json")  # not JSON: no WABA, no organization
        _row(conn, LATE_WABA, "dead", error_kind="unroutable")
        _row(conn, LATE_WABA, "pending", attempts=0)
        bind_waba(conn, globex, LATE_WABA, status="active")  # bound after landing
    return {"acme": acme, "globex": globex}


def _ui(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Asset metadata (by asset) and check metadata (by check) of one refresh_dashboards run."""
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("refresh_dashboards").execute_in_process(instance=instance)
    assert result.success
    assets = {}
    for key in ("org_whatsapp_status", "failed_webhooks", "token_health", "webhook_lag"):
        [mat] = result.asset_materializations_for_node(key)
        assets[key] = {name: value.value for name, value in mat.metadata.items()}
    checks = {e.check_name: {name: v.value for name, v in e.metadata.items()} for e in result.get_asset_check_evaluations()}
    return assets, checks


def _external(ids: dict[str, uuid.UUID], org_id: Any) -> str | None:
    return {str(v): k for k, v in ids.items()}.get(str(org_id)) if org_id is not None else None


def test_ui_admin_api_sensor_and_cli_agree(mixed, engine: Engine, settings: Settings, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assets, checks = _ui(settings)
    with TestClient(create_app(settings.model_copy(update={"admin_api_token": SecretStr(ADMIN)}))) as api:
        admin = api.get("/api/admin/whatsapp/status", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        admin_globex = api.get("/api/admin/whatsapp/status", params={"org": "globex"}, headers={"Authorization": f"Bearer {ADMIN}"}).json()
        listing = api.get("/api/admin/whatsapp/failed-webhooks", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        connection_states = {
            n["phone_number_id"]: n["token_health"]
            for org in ("acme", "globex")
            for c in api.get("/api/v1/whatsapp/check-connection", headers=auth(org)).json()["connections"]
            for n in c["phone_numbers"]
        }
    assert cmd_status(argparse.Namespace(json=True)) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cmd_status(argparse.Namespace(json=False)) == 0
    cli_text = capsys.readouterr().out
    with DagsterInstance.ephemeral() as instance:
        with build_sensor_context(instance=instance, resources={"app_db": AppDatabase(database_url=pg_url)}) as context:
            request = pending_webhooks_sensor(context)
    assert not isinstance(request, SkipReason)
    with engine.connect() as conn:
        sensor_count = count_claimable(conn)  # what the sensor counts when runs end when idle

    # claimable: pending or failed and due, not leased; the late-bound WABA's row is Globex's
    total = sum(CLAIMABLE.values())
    status_rows = {r["organization_external_id"]: r for r in assets["org_whatsapp_status"]["rows"]}
    assert assets["webhook_lag"]["backlog_claimable"] == assets["org_whatsapp_status"]["backlog_claimable"] == total
    assert checks["backlog_age"]["claimable"] == total and sensor_count == total
    assert {k: r["backlog_claimable"] for k, r in status_rows.items()} == {"acme": 1, "globex": 1}
    assert {_external(mixed, lane["organization_id"]): lane["claimable"] for lane in admin["backlog"]["lanes"]} == CLAIMABLE
    assert {lane["organization_external_id"]: lane["claimable"] for lane in cli["backlog"]} == CLAIMABLE
    for lanes in (admin["backlog"]["lanes"], cli["backlog"]):
        [acme] = [lane for lane in lanes if lane["organization_external_id"] == "acme"]
        assert (acme["in_flight"], acme["waiting_retry"]) == (1, 1)
        [unrouted] = [lane for lane in lanes if lane["organization_id"] is None]
        assert unrouted["organization"] == UNROUTED_LANE
    assert (assets["webhook_lag"]["backlog_in_flight"], assets["webhook_lag"]["backlog_waiting_retry"]) == (1, 1)

    # dead: counted once, under its lane, in every view
    dead = sum(DEAD.values())
    assert assets["org_whatsapp_status"]["webhooks_dead_24h"] == assets["failed_webhooks"]["dead_24h"] == dead
    assert checks["dead_letters_24h"]["dead_24h"] == dead and cli["webhooks"]["dead"] == dead
    assert sum(c["count"] for c in admin["failed_webhooks"]["counts"] if c["status"] == "dead") == dead
    assert sum(c["count"] for c in listing["counts"] if c["status"] == "dead") == dead
    assert {k: r["webhooks_dead_24h"] for k, r in status_rows.items()} == {"acme": 1, "globex": 1}
    failed_rows = assets["failed_webhooks"]["rows"]
    assert {(r["organization_external_id"], r["error_kind"]): r["dead"] for r in failed_rows if r["dead"]} == {
        ("acme", "handler_error"): 1, ("globex", "unroutable"): 1, (None, "invalid_json"): 1,
    }
    # the late-bound WABA's dead row is Globex's in the admin API too, filtered or not
    assert [w["status"] for w in admin_globex["failed_webhooks"]["webhooks"]] == ["dead"]
    assert {str(mixed["globex"])} == {w["organization_id"] for w in listing["webhooks"] if w["error_kind"] == "unroutable" and w["status"] == "dead"}

    # unrouted: no organization recorded and the WABA bound to no one, spelled one way
    assert assets["failed_webhooks"]["unrouted"] == admin["failed_webhooks"]["unrouted"] == 2  # the due failed and the dead row
    assert cli["webhooks_unrouted"] == {"dead": 1, "failed": 1, "pending": 2}
    assert assets["org_whatsapp_status"]["webhooks_unrouted_24h"] == sum(cli["webhooks_unrouted"].values()) == 4
    assert checks["dead_letters_24h"]["unrouted"] == 1
    assert {r["organization"] for r in failed_rows if r["organization_id"] is None} == {UNROUTED_LANE}
    assert f"    {UNROUTED_LANE}      claimable=3" in cli_text and "(unrouted)" not in cli_text

    # token state: one classifier, the recorded state re-read against its expiry
    ui_states = {r["phone_number_id"]: r["state"] for r in assets["token_health"]["rows"]}
    admin_states = {n["phone_number_id"]: n["token_health"] for c in admin["connections"]["connections"] for n in c["phone_numbers"]}
    assert ui_states == admin_states == connection_states == TOKENS
    counts = {state: list(TOKENS.values()).count(state) for state in set(TOKENS.values())}
    assert cli["tokens"] == counts
    assert {state: assets["token_health"][state] for state in counts} == counts
    assert {state: assets["org_whatsapp_status"][f"tokens_{state}"] for state in counts} == counts
    assert assets["token_health"]["unhealthy"] == assets["org_whatsapp_status"]["tokens_unhealthy"] == checks["tokens_healthy"]["unhealthy"] == 1
    assert checks["tokens_healthy"]["expiring_soon"] == 1
    assert "not checked yet" in assets["token_health"]["by_phone_number"] and "never" not in assets["token_health"]["by_phone_number"]
    assert "not checked yet: 1" in cli_text


def test_replay_by_organization_selects_by_lane_with_the_one_resolver(mixed, engine: Engine, settings: Settings) -> None:
    from wa_core.dead_letters import DeadLetterSelection, replay_dead_letters
    from wa_core.organizations import InvalidOrganization, UnknownOrganization

    logs = whatsapp_webhook_logs.c
    with engine.begin() as conn:
        late = conn.execute(sa.select(logs.id).where(logs.waba_id == LATE_WABA, logs.status == "dead")).scalar_one()
        # the late-bound WABA's dead row has no organization recorded: it is Globex's by its lane
        for ref in ("globex", str(mixed["globex"]), f"  {mixed['globex']}  "):
            assert replay_dead_letters(conn, DeadLetterSelection(organization=ref), dry_run=True) == [late]
        with pytest.raises(UnknownOrganization):
            replay_dead_letters(conn, DeadLetterSelection(organization="nobody"), dry_run=True)
        with pytest.raises(InvalidOrganization):
            replay_dead_letters(conn, DeadLetterSelection(organization="x\x00"), dry_run=True)
        assert replay_dead_letters(conn, DeadLetterSelection(organization="globex")) == [late]
        assert conn.execute(sa.select(logs.status).where(logs.id == late)).scalar_one() == "pending"
