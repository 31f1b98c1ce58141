"""Dashboard assets and their checks: exact figures on a known data set, snapshots, alerts.

One data set (:func:`build`) holds three organizations, onboardings in every state, phone
numbers with healthy, expiring, invalid and unchecked tokens, webhook rows processed,
failed (due and not due), dead (routed and not), pending and replayed, messages and statuses
with Meta timestamps, a parked status and a parked edit, and an unclaimed WABA's
PARTNER_ADDED. Each ``compute_*`` function is asserted figure by figure at a fixed ``now``;
the ``refresh_dashboards`` job is run to check metadata, snapshots, the checks failing on
the bad data and passing once each cause is fixed, and the alerts sent and resolved.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance, materialize
from sqlalchemy.engine import Engine

from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA
from wa_pipelines.definitions import defs
from wa_pipelines.defs.dashboards import checks
from wa_pipelines.defs.dashboards.checks import DASHBOARD_CHECKS, redis_answers_check
from wa_pipelines.defs.dashboards.assets import DASHBOARD_ASSETS, org_whatsapp_status
from wa_core.reporting.check_queries import unclaimed_wabas
from wa_core.reporting.failed_webhooks import compute_failed_webhooks
from wa_core.reporting.lag import HourLag, compute_webhook_lag
from wa_core.reporting.onboarding_timeline import compute_onboarding_timeline
from wa_core.reporting.org_status import compute_org_status
from wa_core.reporting.redis_probe import redis_target
from wa_core.reporting.stats import percentile
from wa_core.reporting.tokens import compute_token_health
from wa_core.token_health import current_state as token_state
from wa_core.reporting.snapshots import load_snapshot, save_snapshot
from wa_pipelines.resources import AppDatabase
from wa_core.processing.store import insert_message
from wa_core.alerts import Alert
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import (
    dashboard_snapshots,
    metadata,
    ops_alerts,
    utcnow,
    whatsapp_configs,
    whatsapp_message_revisions,
    whatsapp_message_statuses,
    whatsapp_messages,
    whatsapp_onboarding,
    whatsapp_webhook_logs,
)
from wa_core.dead_letters import assign_waba
from wa_core.settings import Settings, get_settings

ACME_PHONE2, GLOBEX_PHONE2 = "200000000000004", "200000000000003"
STRANGER_WABA = "100000000000079"  # shared with the app, owned by no organization
H, M, S = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)
DAY = timedelta(days=1)
CLOSED_REDIS = "redis://127.0.0.1:1/0"
REAL_REDIS = "redis://127.0.0.1:6379/0"


# --- the data set ---------------------------------------------------------------------------------


def _hook(conn, now: datetime, *, status: str, received: timedelta, org=None, **values: Any) -> int:
    body = f"webhook {uuid.uuid4()}".encode()
    row = {
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_size": len(body),
        "signature_status": "valid",
        "status": status,
        "attempts": 1,
        "received_at": now - received,
        "updated_at": now,
        "organization_id": org,
        **values,
    }
    return conn.execute(sa.insert(whatsapp_webhook_logs).values(**row).returning(whatsapp_webhook_logs.c.id)).scalar_one()


def _message(conn, now, org, phone, wamid, *, received, lag, direction="inbound", source="cloud_api") -> None:
    conn.execute(
        sa.insert(whatsapp_messages).values(
            organization_id=org, phone_number_id=phone, wamid=wamid, direction=direction, source=source, type="text",
            body="hello", raw={"id": wamid}, received_at=now - received, provider_timestamp=now - received - lag,
        )
    )


def _onboarding(conn, now, org, status, *, created, **values: Any) -> uuid.UUID:
    oid = uuid.uuid4()
    conn.execute(
        sa.insert(whatsapp_onboarding).values(
            id=oid, organization_id=org, tracking_code=uuid.uuid4().hex, status=status,
            expires_at=values.pop("expires_at", now - created + DAY), created_at=now - created,
            updated_at=values.pop("updated_at", now - created + M), **values,
        )
    )
    return oid


def build(engine: Engine, now: datetime) -> dict[str, Any]:
    """The known data set, with times relative to ``now``; returns the ids the tests need."""
    ids: dict[str, Any] = {}
    with engine.begin() as conn:
        acme = ensure_organization(conn, "acme", "Acme Store")
        globex = ensure_organization(conn, "globex", "Globex Ltd")
        initech = ensure_organization(conn, "initech", "Initech")
        ids.update(acme=acme, globex=globex, initech=initech)
        bind_waba(conn, acme, ACME_WABA, [PhoneNumber(ACME_PHONE, "15550000001", "Acme Store", True), PhoneNumber(ACME_PHONE2, "15550000004")], status="active")
        bind_waba(conn, globex, GLOBEX_WABA, [PhoneNumber(GLOBEX_PHONE, "15550000002", "Globex Ltd")], status="active")
        bind_waba(conn, globex, GLOBEX_WABA, [PhoneNumber(GLOBEX_PHONE2, "15550000003")])  # a second number, pending
        cfg = whatsapp_configs.c
        tokens = {
            ACME_PHONE: dict(token_health="valid", token_expires_at=now + 3 * DAY, token_checked_at=now - H),  # expiring soon
            ACME_PHONE2: dict(token_health="valid", token_expires_at=None, token_checked_at=now - H),  # never expires
            GLOBEX_PHONE: dict(token_health="invalid", token_health_reason="190: Error validating access token", token_checked_at=now - H),
        }
        for phone, values in tokens.items():
            conn.execute(sa.update(whatsapp_configs).where(cfg.phone_number_id == phone).values(**values))

        # onboardings: acme 4, globex 3 (+1 older than the funnel's 30 days), initech 1
        _onboarding(conn, now, acme, "completed", created=2 * DAY, waba_id=ACME_WABA, session_posted_at=now - 2 * DAY + M,
                    token_exchanged_at=now - 2 * DAY + M, confirmed_at=now - 2 * DAY + 2 * M, completed_at=now - 2 * DAY + 3 * M, follow_up_status="done")
        _onboarding(conn, now, acme, "failed", created=DAY, session_posted_at=now - DAY + M, error_code="100", waba_id="100000000000050")
        _onboarding(conn, now, acme, "cancelled", created=5 * H, session_posted_at=now - 5 * H + M, cancel_step="PHONE_NUMBER_SETUP", signup_event="CANCEL")
        _onboarding(conn, now, acme, "pending", created=25 * H, expires_at=now - H)  # past its expiry: expired
        _onboarding(conn, now, globex, "completed", created=3 * DAY, waba_id=GLOBEX_WABA, session_posted_at=now - 3 * DAY + M,
                    token_exchanged_at=now - 3 * DAY + M, confirmed_at=now - 3 * DAY + M, completed_at=now - 3 * DAY + M, follow_up_status="done")
        ids["follow_up_failed"] = _onboarding(conn, now, globex, "failed", created=2 * H, waba_id="100000000000051", session_posted_at=now - 2 * H,
                                              token_exchanged_at=now - 2 * H, follow_up_status="failed", error_code="131031")
        _onboarding(conn, now, globex, "pending", created=10 * M, expires_at=now + 23 * H)
        _onboarding(conn, now, globex, "expired", created=40 * DAY)
        _onboarding(conn, now, initech, "cancelled", created=H, session_posted_at=now - H, error_code="2", signup_event="CANCEL")

        # webhook rows
        ids["w1"] = _hook(conn, now, status="processed", received=2 * H, org=acme, processed_at=now - 2 * H + 0.5 * S)
        ids["w2"] = _hook(conn, now, status="processed", received=2 * H, org=acme, processed_at=now - 2 * H + 1.5 * S)
        ids["w3"] = _hook(conn, now, status="processed", received=H, org=globex, processed_at=now - H + 2.5 * S)
        ids["w4"] = _hook(conn, now, status="processed", received=30 * H, org=acme, processed_at=now - 30 * H + 100 * S)
        ids["w5"] = _hook(conn, now, status="failed", received=3 * H, org=acme, error_kind="handler_error", next_attempt_at=now + 10 * M,
                          last_error="entry[0].changes[0].message: KeyError at messages.py:12")
        ids["w6"] = _hook(conn, now, status="dead", received=4 * H, org=globex, error_kind="invalid_payload", last_error="no id")
        ids["w7"] = _hook(conn, now, status="dead", received=5 * H, error_kind="invalid_json", last_error="body is not JSON")
        ids["w8"] = _hook(conn, now, status="dead", received=48 * H, error_kind="invalid_json", last_error="body is not JSON")
        ids["w9"] = _hook(conn, now, status="failed", received=6 * H, error_kind="unroutable", fields="account_update", next_attempt_at=now - 20 * M,
                          last_error=f"entry[0].changes[0].PARTNER_ADDED: no organization is bound to WABA {STRANGER_WABA} (PARTNER_ADDED)")
        ids["w10"] = _hook(conn, now, status="pending", received=15 * M, attempts=0)
        ids["w11"] = _hook(conn, now, status="pending", received=10 * DAY, replayed_at=now - M, replay_count=1, attempts=0)

        # messages (Meta → arrival lags 2, 4, 6, 8 s), a history import and one out of the window
        _message(conn, now, acme, ACME_PHONE, "wamid.IN1", received=2 * H, lag=2 * S)
        _message(conn, now, acme, ACME_PHONE, "wamid.IN2", received=2 * H, lag=4 * S)
        _message(conn, now, acme, ACME_PHONE, "wamid.ECHO1", received=H, lag=6 * S, direction="outbound", source="business_app_echo")
        _message(conn, now, acme, ACME_PHONE, "wamid.HIST1", received=H, lag=30 * DAY, source="history")
        _message(conn, now, acme, ACME_PHONE, "wamid.OLD1", received=30 * H, lag=S)
        _message(conn, now, globex, GLOBEX_PHONE, "wamid.IN3", received=H, lag=8 * S)
        st = dict(raw={}, status="delivered")
        conn.execute(sa.insert(whatsapp_message_statuses).values(  # parked: its message is not stored
            organization_id=globex, phone_number_id=GLOBEX_PHONE, wamid="wamid.OUT1", received_at=now - 2 * H, provider_timestamp=now - 2 * H - 10 * S, **st))
        conn.execute(sa.insert(whatsapp_message_statuses).values(
            organization_id=acme, phone_number_id=ACME_PHONE, wamid="wamid.ECHO1", received_at=now - H, provider_timestamp=now - H - S, **st))
        rev = dict(organization_id=acme, phone_number_id=ACME_PHONE, kind="edit", body="edited", raw={})
        conn.execute(sa.insert(whatsapp_message_revisions).values(  # parked: the original is not stored
            original_wamid="wamid.MISSING", revision_wamid="wamid.EDIT1", received_at=now - 3 * H, provider_timestamp=now - 3 * H, **rev))
        conn.execute(sa.insert(whatsapp_message_revisions).values(
            original_wamid="wamid.IN1", revision_wamid="wamid.EDIT2", received_at=now - 2 * H, applied_at=now - 2 * H, **rev))
    return ids


def fix_everything(engine: Engine, ids: dict[str, Any]) -> None:
    """Remove each check's cause the way an operator (or the next webhooks) would."""
    now = utcnow()
    logs, cfg = whatsapp_webhook_logs.c, whatsapp_configs.c
    with engine.begin() as conn:
        # dead letters replayed and processed after a fix
        conn.execute(sa.update(whatsapp_webhook_logs).where(logs.status == "dead").values(status="processed", processed_at=now))
        # the backlog drained; the unclaimed WABA assigned (its PARTNER_ADDED replayed: pending since now)
        conn.execute(sa.update(whatsapp_webhook_logs).where(logs.id.in_([ids["w10"], ids["w11"]])).values(status="processed", processed_at=now))
        assert assign_waba(conn, STRANGER_WABA, "initech")["replayed"] == [ids["w9"]]
        # the missing messages arrive: the parked status and edit are applied
        for org, phone, wamid, direction in ((ids["globex"], GLOBEX_PHONE, "wamid.OUT1", "outbound"), (ids["acme"], ACME_PHONE, "wamid.MISSING", "inbound")):
            insert_message(conn, dict(organization_id=org, phone_number_id=phone, wamid=wamid, direction=direction, source="cloud_api",
                                      type="text", raw={"id": wamid}, received_at=now, provider_timestamp=now, status_rank=0))
        # the tokens renewed
        conn.execute(sa.update(whatsapp_configs).where(cfg.phone_number_id == ACME_PHONE).values(token_expires_at=now + 60 * DAY))
        conn.execute(sa.update(whatsapp_configs).where(cfg.phone_number_id == GLOBEX_PHONE).values(token_health="valid", token_health_reason=None))


# --- a notifier that records what the checks send -----------------------------------------------------


class RecordingNotifier:
    """Follows the notifier contract and keeps open alerts in ``ops_alerts`` as the real one does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sent: list[Alert] = []
        self.resolved: list[str] = []

    def notify(self, alert: Alert) -> bool:
        self.sent.append(alert)
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(ops_alerts).where(ops_alerts.c.fingerprint == alert.fingerprint))
            conn.execute(sa.insert(ops_alerts).values(
                fingerprint=alert.fingerprint, kind=alert.kind, key=alert.key, severity=alert.severity, summary=alert.summary,
                details=dict(alert.details), organization_id=alert.organization_id, first_seen_at=now, last_seen_at=now, occurrences=1,
            ))
        return True

    def resolve(self, kind: str, key: str) -> bool:
        self.resolved.append(f"{kind}:{key}")
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(ops_alerts).where(ops_alerts.c.fingerprint == f"{kind}:{key}", ops_alerts.c.resolved_at.is_(None)).values(resolved_at=utcnow())
            ).rowcount > 0


@pytest.fixture()
def notifier(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> RecordingNotifier:
    recording = RecordingNotifier(engine)
    monkeypatch.setattr(checks, "get_notifier", lambda settings=None, engine=None: recording)
    return recording


def _redis(monkeypatch: pytest.MonkeyPatch, url: str | None) -> None:
    if url:
        monkeypatch.setenv("REDIS_URL", url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()


def _run_refresh_job():
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("refresh_dashboards").execute_in_process(instance=instance)
    assert result.success
    return result


# --- unit pieces --------------------------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 95) == 7.0
    assert percentile([1, 2, 4, 6, 8, 10], 50) == 5.0
    assert percentile([10, 1, 8, 2, 6, 4], 95) == pytest.approx(9.5)
    assert percentile([1, 2, 3, 4], 0) == 1 and percentile([1, 2, 3, 4], 100) == 4
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_token_state_reads_the_expiry_against_now() -> None:
    now, soon = datetime(2026, 1, 20, 12, tzinfo=timezone.utc), timedelta(days=7)
    assert token_state(None, None, now, soon) == "not_checked"  # never checked: not checked yet (was "unknown")
    assert token_state("unknown", now + 30 * DAY, now, soon) == "unknown"  # the last check itself failed
    assert token_state("valid", None, now, soon) == "valid"
    assert token_state("valid", now + 3 * DAY, now, soon) == "expiring_soon"
    assert token_state("valid", now - S, now, soon) == "expired"
    assert token_state("expiring_soon", now + 30 * DAY, now, soon) == "valid"
    assert token_state("invalid", now + 30 * DAY, now, soon) == "invalid"
    assert token_state("missing_permission", None, now, soon) == "missing_permission"
    assert token_state("valid", (now + 3 * DAY).replace(tzinfo=None), now, soon) == "expiring_soon"  # SQLite's naive times


def test_redis_target_hides_credentials() -> None:
    assert redis_target("redis://:s3cret@cache.internal:6380/2") == "cache.internal:6380/2"
    assert redis_target("redis://user:pw@localhost") == "localhost:6379"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("localhost:6379", "localhost:6379"),
        ("redis://:pw@127.0.0.1:99999/0", "127.0.0.1:(invalid port)/0"),
        ("redis://[::1/0", "(unparsable REDIS_URL)"),
        ("redis://user:pw/0", "user:(invalid port)/0"),  # the password would be the "port"
        ("unix:///run/redis.sock", "unix:/run/redis.sock"),
    ],
)
def test_redis_target_never_raises_nor_shows_credentials(url: str, target: str) -> None:
    assert redis_target(url) == target and "pw" not in redis_target(url)


@pytest.mark.parametrize(
    "url", ["localhost:6379", "redis://:hunter2@127.0.0.1:99999/0", "redis://[::1/0", "redis://user:hunter2/0", "http://cache:6379/0"]
)
def test_redis_check_reports_a_malformed_url_without_raising(
    url: str, engine: Engine, settings: Settings, notifier: RecordingNotifier, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    _redis(monkeypatch, url)
    result = materialize([org_whatsapp_status, redis_answers_check], resources={"app_db": AppDatabase(database_url=pg_url)})
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity.value == "WARN"
    assert evaluation.description.startswith("REDIS_URL is malformed: ")
    [alert] = notifier.sent
    assert alert.fingerprint == "redis_down:redis-check" and alert.summary.startswith("REDIS_URL is malformed: ")
    shown = evaluation.description + str(evaluation.metadata) + alert.summary + str(dict(alert.details))
    assert "hunter2" not in shown


def test_lineage_reads_from_raw_webhooks_to_every_dashboard() -> None:
    graph = defs.resolve_asset_graph()
    parents = {a.key.to_user_string(): {k.to_user_string() for k in graph.get(a.key).parent_keys} for a in DASHBOARD_ASSETS}
    assert set(parents) == {"org_whatsapp_status", "onboarding_timeline", "failed_webhooks", "token_health", "webhook_lag", "number_health"}
    assert parents["number_health"] == {"whatsapp_number_health", "whatsapp_waba_health", "whatsapp_account_alerts", "whatsapp_templates"}
    assert parents["org_whatsapp_status"] >= {"whatsapp_connections", "whatsapp_configs", "whatsapp_messages", "whatsapp_webhook_logs"}
    assert parents["failed_webhooks"] >= {"whatsapp_webhook_logs"}
    assert parents["token_health"] >= {"whatsapp_configs"}
    assert parents["webhook_lag"] >= {"whatsapp_messages", "whatsapp_message_statuses", "whatsapp_webhook_logs"}
    assert parents["onboarding_timeline"]  # whatsapp_connections until whatsapp_onboarding is declared
    assert AssetKey("whatsapp_webhook_logs") in graph.get(AssetKey("whatsapp_messages")).parent_keys
    # the refresh job runs every check, each right after its asset
    job = defs.resolve_job_def("refresh_dashboards")
    nodes = {n.name for n in job.graph.node_defs}
    assert {f"{c.asset_key.to_user_string()}_{c.name}" for d in DASHBOARD_CHECKS for c in d.check_specs} <= nodes
    assert len(DASHBOARD_CHECKS) == 6


# --- exact figures ------------------------------------------------------------------------------------------


def test_org_whatsapp_status_figures(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    ids = build(engine, now)
    with engine.connect() as conn:
        board = compute_org_status(conn, now)
    rows = {r.organization: r for r in board.rows}
    assert [r.organization for r in board.rows] == ["Acme Store", "Globex Ltd", "Initech"]
    acme = rows["Acme Store"]
    assert (acme.organization_id, acme.organization_external_id) == (str(ids["acme"]), "acme")
    assert (acme.completed_onboardings, acme.active_connections) == (1, 1)
    assert acme.phone_numbers == {"pending": 0, "connected": 2, "disconnected": 0, "offboarded": 0, "disabled": 0}
    assert (acme.messages_in_24h, acme.messages_out_24h) == (2, 1)  # history and the 30 h old message left out
    assert (acme.webhooks_processed_24h, acme.webhooks_failed_24h, acme.webhooks_dead_24h) == (2, 1, 0)
    assert acme.tokens == {"valid": 1, "expiring_soon": 1, "expired": 0, "invalid": 0, "missing_permission": 0, "unknown": 0, "not_checked": 0}
    globex = rows["Globex Ltd"]
    assert (globex.completed_onboardings, globex.active_connections) == (1, 1)
    assert globex.phone_numbers["connected"] == 1 and globex.phone_numbers["pending"] == 1
    assert (globex.messages_in_24h, globex.messages_out_24h) == (1, 0)
    assert (globex.webhooks_processed_24h, globex.webhooks_failed_24h, globex.webhooks_dead_24h) == (1, 0, 1)
    assert globex.tokens["invalid"] == 1 and globex.tokens["not_checked"] == 1 and globex.tokens["unknown"] == 0
    initech = rows["Initech"]
    assert (initech.active_connections, sum(initech.phone_numbers.values()), initech.messages_in_24h) == (0, 0, 0)
    t = board.totals
    assert (t["organizations"], t["completed_onboardings"], t["active_connections"]) == (3, 2, 2)
    assert (t["phone_numbers"], t["phone_numbers_connected"], t["phone_numbers_pending"]) == (4, 3, 1)
    assert (t["messages_in_24h"], t["messages_out_24h"]) == (3, 1)
    # every lane, the unrouted one included (its failed w9 and dead w7): as failed_webhooks counts them
    assert (t["webhooks_processed_24h"], t["webhooks_failed_24h"], t["webhooks_dead_24h"], t["webhooks_unrouted_24h"]) == (3, 2, 2, 3)
    assert (t["tokens_valid"], t["tokens_expiring_soon"], t["tokens_invalid"], t["tokens_not_checked"], t["tokens_unhealthy"]) == (1, 1, 1, 1, 1)


def test_onboarding_timeline_funnel_and_latest(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    ids = build(engine, now)
    with engine.connect() as conn:
        board = compute_onboarding_timeline(conn, now)
        two = compute_onboarding_timeline(conn, now, latest=2)
    t = board.totals
    assert {k: t[k] for k in ("started", "session_posted", "token_exchanged", "confirmed", "completed", "expired", "failed", "cancelled", "in_progress")} == {
        "started": 8, "session_posted": 4, "token_exchanged": 3, "confirmed": 2, "completed": 2,
        "expired": 1, "failed": 2, "cancelled": 2, "in_progress": 1,
    }  # the 40-day-old onboarding is outside the 30-day funnel
    assert t["failed_by_step"] == {"code_exchange": 1, "follow_up": 1}
    assert t["cancelled_by_step"] == {"PHONE_NUMBER_SETUP": 1, "signup_error": 1}
    assert t["completion_rate"] == 0.25 and t["organizations"] == 3 and t["funnel_days"] == 30
    rows = {f.organization: f for f in board.rows}
    acme, globex = rows["Acme Store"], rows["Globex Ltd"]
    assert (acme.started, acme.completed, acme.expired, acme.failed, acme.cancelled, acme.in_progress) == (4, 1, 1, 1, 1, 0)
    assert acme.failed_by_step == {"code_exchange": 1} and acme.cancelled_by_step == {"PHONE_NUMBER_SETUP": 1}
    assert [e.status for e in acme.latest] == ["cancelled", "failed", "expired", "completed"]  # newest first; pending past expiry shows expired
    assert [e.step for e in acme.latest] == ["PHONE_NUMBER_SETUP", "code_exchange", None, None]
    assert acme.latest[3].waba_id == ACME_WABA and acme.latest[3].completed_at is not None
    assert (globex.started, globex.failed, globex.in_progress) == (3, 1, 1) and globex.failed_by_step == {"follow_up": 1}
    assert [e.status for e in globex.latest] == ["pending", "failed", "completed", "expired"]  # the old one is still listed
    assert globex.latest[1].onboarding_id == str(ids["follow_up_failed"]) and globex.latest[1].error_code == "131031"
    assert rows["Initech"].cancelled_by_step == {"signup_error": 1}
    assert [len(f.latest) for f in two.rows] == [2, 2, 1]
    assert [e.status for e in two.rows[1].latest] == ["pending", "failed"]
    payload = board.payload()
    assert payload["rows"][0]["organization_id"] == str(ids["acme"]) and payload["rows"][0]["organization_external_id"] == "acme"
    assert isinstance(payload["rows"][0]["latest"][0]["created_at"], str)
    assert "ip_address" not in payload["rows"][0]["latest"][0] and "user_agent" not in payload["rows"][0]["latest"][0]


def test_failed_webhooks_by_organization_and_error_kind(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    build(engine, now)
    with engine.connect() as conn:
        board = compute_failed_webhooks(conn, now)
    got = [(g.organization, g.organization_id is None, g.error_kind, g.failed, g.dead, g.total, g.dead_24h) for g in board.rows]
    assert got == [
        ("unrouted", True, "invalid_json", 0, 2, 2, 1),
        ("Acme Store", False, "handler_error", 1, 0, 1, 0),
        ("Globex Ltd", False, "invalid_payload", 0, 1, 1, 1),
        ("unrouted", True, "unroutable", 1, 0, 1, 0),
    ]
    json_group = board.rows[0]
    assert json_group.oldest_received_at == now - 48 * H and json_group.newest_received_at == now - 5 * H
    assert json_group.organization_external_id is None
    assert board.totals == {
        "failed": 2, "dead": 3, "total": 5, "unrouted": 3, "dead_24h": 2, "groups": 4, "organizations": 2,
        "by_error_kind": {"handler_error": 1, "invalid_json": 2, "invalid_payload": 1, "unroutable": 1},
    }


def test_token_health_per_phone_number(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    build(engine, now)
    with engine.connect() as conn:
        board = compute_token_health(conn, now, expiring_soon_days=7)
    got = [(t.organization, t.phone_number_id, t.state, t.recorded_state, t.days_to_expiry, t.needs_action) for t in board.rows]
    assert got == [
        ("Acme Store", ACME_PHONE, "expiring_soon", "valid", 3.0, True),
        ("Acme Store", ACME_PHONE2, "valid", "valid", None, False),  # None = never expires
        ("Globex Ltd", GLOBEX_PHONE, "invalid", "invalid", None, True),
        ("Globex Ltd", GLOBEX_PHONE2, "not_checked", None, None, False),
    ]
    assert board.rows[3].checked_at is None and board.rows[0].expires_at == now + 3 * DAY
    assert board.totals == {
        "phone_numbers": 4, "valid": 1, "expiring_soon": 1, "expired": 0, "invalid": 1, "missing_permission": 0, "unknown": 0,
        "not_checked": 1, "unhealthy": 1, "needs_action": 2, "min_days_to_expiry": 3.0,
    }
    payload = board.payload()
    assert "display_phone_number" not in payload["rows"][0] and "15550000001" not in str(payload)


def test_webhook_lag_percentiles_per_hour_and_backlog(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    ids = build(engine, now)
    with engine.connect() as conn:
        board = compute_webhook_lag(conn, now)
    h2, h1 = (now - 2 * H).replace(minute=0, second=0, microsecond=0), (now - H).replace(minute=0, second=0, microsecond=0)
    assert board.rows == [
        HourLag(h2, 3, 4.0, 9.4, 2, 1.0, 1.45),  # Meta lags 2, 4, 10 s (two messages, the parked status); processed 0.5, 1.5 s
        HourLag(h1, 3, 6.0, 7.8, 1, 2.5, 2.5),  # 6, 8, 1 s (echo, message, status); processed 2.5 s
    ]
    t = board.totals
    assert (t["meta_to_arrival_count"], t["meta_to_arrival_p50_seconds"], t["meta_to_arrival_p95_seconds"]) == (6, 5.0, 9.5)
    assert (t["arrival_to_processed_count"], t["arrival_to_processed_p50_seconds"], t["arrival_to_processed_p95_seconds"]) == (3, 1.5, 2.4)
    # claimable: two pending (one replayed a minute ago), one failed whose retry fell due 20 minutes ago
    # (backlog_failed_waiting is now backlog_waiting_retry, the name wa_core.backlog and the admin API give it)
    assert (t["backlog_claimable"], t["backlog_pending"], t["backlog_failed_due"], t["backlog_waiting_retry"]) == (3, 2, 1, 1)
    assert t["backlog_in_flight"] == 0
    assert t["backlog_oldest_age_seconds"] == 1200.0 and t["backlog_oldest_webhook_id"] == ids["w9"]
    assert t["backlog_oldest_waiting_since"] == now - 20 * M


def test_webhook_lag_excludes_implausible_meta_timestamps(engine: Engine, settings: Settings) -> None:
    now = utcnow()
    ids = build(engine, now)
    bad = {
        "wamid.epoch": datetime(1970, 1, 1, tzinfo=timezone.utc),  # a zero timestamp
        "wamid.2286": datetime(2286, 11, 20, tzinfo=timezone.utc),  # milliseconds read as seconds
        "wamid.future": now + H,  # a clock an hour ahead
        "wamid.8days": now - 8 * DAY,  # beyond Meta's 7-day retry window
    }
    with engine.begin() as conn:
        for wamid, stamp in bad.items():
            conn.execute(sa.insert(whatsapp_messages).values(
                organization_id=ids["acme"], phone_number_id=ACME_PHONE, wamid=wamid, direction="inbound", source="cloud_api",
                type="text", body="hello", raw={"id": wamid}, received_at=now - 2 * H, provider_timestamp=stamp,
            ))
        _message(conn, now, ids["acme"], ACME_PHONE, "wamid.skew", received=2 * H, lag=-200 * S)  # clock skew: kept
    with engine.connect() as conn:
        t = compute_webhook_lag(conn, now).totals
    assert t["meta_to_arrival_excluded"] == 4
    assert t["meta_to_arrival_count"] == 7 and t["meta_to_arrival_p50_seconds"] == 4.0  # the six known samples and -200 s
    assert t["meta_to_arrival_p95_seconds"] == 9.4


def test_unclaimed_wabas_lists_the_waiting_waba_until_it_is_bound(engine: Engine, settings: Settings) -> None:
    ids = build(engine, utcnow())
    with engine.connect() as conn:
        [waiting] = unclaimed_wabas(conn)
    assert (waiting.waba_id, waiting.webhook_ids, waiting.states) == (STRANGER_WABA, [ids["w9"]], ["failed"])
    with engine.begin() as conn:
        bind_waba(conn, ids["initech"], STRANGER_WABA)  # bound, its row not retried yet
        assert unclaimed_wabas(conn) == []


# --- snapshots ---------------------------------------------------------------------------------------------


def test_save_snapshot_upserts_one_row_per_asset(engine: Engine, settings: Settings) -> None:
    first = {"computed_at": utcnow() - H, "totals": {"n": 1}, "rows": [{"organization_id": uuid.UUID(int=1), "at": utcnow()}]}
    with engine.begin() as conn:
        save_snapshot(conn, "token_health", first, "run-1")
        save_snapshot(conn, "token_health", {"computed_at": utcnow(), "totals": {"n": 2}, "rows": []}, "run-2")
    with engine.connect() as conn:
        snap = load_snapshot(conn, "token_health")
        assert conn.execute(sa.select(sa.func.count()).select_from(dashboard_snapshots)).scalar_one() == 1
        assert load_snapshot(conn, "nothing") is None
    assert snap["run_id"] == "run-2" and snap["payload"]["totals"] == {"n": 2}
    assert abs((snap["computed_at"] - utcnow()).total_seconds()) < 60


def test_the_same_figures_on_sqlite(tmp_path: Path, engine: Engine, settings: Settings) -> None:
    now = utcnow()
    build(engine, now)
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'dash.sqlite3'}")
    metadata.create_all(lite)
    build(lite, now)
    computes = (compute_org_status, compute_onboarding_timeline, compute_failed_webhooks, compute_token_health, compute_webhook_lag)
    for compute in computes:
        with engine.connect() as pg, lite.connect() as sq:
            a, b = compute(pg, now), compute(sq, now)
        assert a.totals == b.totals, compute.__name__
        assert len(a.rows) == len(b.rows), compute.__name__
    with lite.begin() as conn:
        with lite.connect() as c2:
            board = compute_webhook_lag(c2, now)
        save_snapshot(conn, "webhook_lag", board.payload(), None)
        save_snapshot(conn, "webhook_lag", board.payload(), "run-x")
    with lite.connect() as conn:
        assert load_snapshot(conn, "webhook_lag")["payload"]["totals"]["backlog_claimable"] == 3
    lite.dispose()


# --- the job: metadata, snapshots, checks and alerts -------------------------------------------------------


def _checks(result) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_refresh_dashboards_job_records_metadata_snapshots_and_checks(
    engine: Engine, settings: Settings, notifier: RecordingNotifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = build(engine, utcnow())
    _redis(monkeypatch, CLOSED_REDIS)
    result = _run_refresh_job()

    # one materialisation per dashboard, with plotted numbers, a table and rows
    mats = {}
    for a in DASHBOARD_ASSETS:
        [mat] = result.asset_materializations_for_node(a.key.to_user_string())
        mats[a.key.to_user_string()] = mat.metadata
    assert set(mats) == {"org_whatsapp_status", "onboarding_timeline", "failed_webhooks", "token_health", "webhook_lag", "number_health"}
    status = mats["org_whatsapp_status"]
    assert status["messages_in_24h"].value == 3 and status["webhooks_dead_24h"].value == 2 and status["tokens_unhealthy"].value == 1
    assert "| Acme Store | 1 | 1 | 2 / 2 | 2 | 1 | 2 | 1 | 0 | 0 / 1 |" in status["by_organization"].value
    assert [r["organization_external_id"] for r in status["rows"].value] == ["acme", "globex", "initech"]
    assert mats["failed_webhooks"]["dead_24h"].value == 2 and mats["failed_webhooks"]["by_error_kind"].value["invalid_json"] == 2
    assert mats["token_health"]["needs_action"].value == 2
    assert mats["onboarding_timeline"]["started"].value == 8 and mats["onboarding_timeline"]["completion_rate"].value == 0.25
    lag = mats["webhook_lag"]
    assert lag["meta_to_arrival_p95_seconds"].value == 9.5 and lag["backlog_claimable"].value == 3
    assert 1200 <= lag["backlog_oldest_age_seconds"].value < 1260
    assert "min_days_to_expiry" in mats["token_health"] and "backlog_oldest_waiting_since" not in lag  # only numbers are plotted

    # one snapshot per dashboard, with the run and the payload contract
    with engine.connect() as conn:
        snaps = {s.asset_key: s for s in conn.execute(sa.select(dashboard_snapshots))}
    assert set(snaps) == set(mats)
    for key, snap in snaps.items():
        assert snap.run_id == result.run_id and set(snap.payload) == {"computed_at", "totals", "rows"}, key
        datetime.fromisoformat(snap.payload["computed_at"])
    for key in ("org_whatsapp_status", "onboarding_timeline", "failed_webhooks", "token_health"):
        for row in snaps[key].payload["rows"]:
            assert {"organization_id", "organization_external_id"} <= set(row), key
    assert snaps["org_whatsapp_status"].payload["totals"]["messages_in_24h"] == 3
    unrouted = [r for r in snaps["failed_webhooks"].payload["rows"] if r["organization"] == "unrouted"]
    assert {r["organization_id"] for r in unrouted} == {None} and len(unrouted) == 2

    # every check fails on this data set, with its figures
    evals = _checks(result)
    assert {name: e.passed for name, e in evals.items()} == {
        "dead_letters_24h": False, "backlog_age": False, "parked_items_age": False,
        "unclaimed_wabas": False, "tokens_healthy": False, "redis_answers": False,
    }
    assert evals["dead_letters_24h"].metadata["dead_24h"].value == 2 and evals["dead_letters_24h"].severity.value == "ERROR"
    assert evals["backlog_age"].metadata["oldest_webhook_id"].value == ids["w9"]
    assert evals["parked_items_age"].metadata["parked_statuses_over_limit"].value == 1
    assert evals["parked_items_age"].metadata["parked_revisions_over_limit"].value == 1
    assert evals["unclaimed_wabas"].metadata["waba_ids"].value == [STRANGER_WABA]
    assert evals["tokens_healthy"].severity.value == "ERROR"
    assert (evals["tokens_healthy"].metadata["unhealthy"].value, evals["tokens_healthy"].metadata["expiring_soon"].value) == (1, 1)
    assert evals["redis_answers"].metadata["redis"].value == "127.0.0.1:1/0"

    # one alert per cause, without personal data
    sent = {a.fingerprint: a for a in notifier.sent}
    assert set(sent) == {
        "dead_letter:dead_letters_24h", "asset_check_failed:backlog_age", "asset_check_failed:parked_items_age",
        f"unclaimed_waba:{STRANGER_WABA}", f"token_unhealthy:{GLOBEX_PHONE}", f"token_unhealthy:{ACME_PHONE}", "redis_down:redis-check",
    }
    assert sent[f"token_unhealthy:{GLOBEX_PHONE}"].severity == "error" and sent[f"token_unhealthy:{ACME_PHONE}"].severity == "warning"
    assert sent[f"token_unhealthy:{GLOBEX_PHONE}"].organization_id == ids["globex"]
    for alert in notifier.sent:
        text = alert.summary + str(dict(alert.details))
        assert "1555" not in text and "hello" not in text, alert.fingerprint
    assert notifier.resolved == []

    # each cause fixed: every check passes and every alert is resolved
    fix_everything(engine, ids)
    _redis(monkeypatch, REAL_REDIS)
    notifier.sent.clear()
    evals = _checks(_run_refresh_job())
    assert {name: e.passed for name, e in evals.items()} == dict.fromkeys(
        ("dead_letters_24h", "backlog_age", "parked_items_age", "unclaimed_wabas", "tokens_healthy", "redis_answers"), True
    )
    assert evals["backlog_age"].metadata["claimable"].value == 1  # the replayed PARTNER_ADDED, waiting since its replay
    assert evals["redis_answers"].metadata["ping_ms"].value >= 0
    assert notifier.sent == []
    assert set(notifier.resolved) >= set(sent)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ops_alerts).where(ops_alerts.c.resolved_at.is_(None))).scalar_one() == 0


def test_redis_check_without_redis_url_passes_on_the_embedded_cache(
    engine: Engine, settings: Settings, notifier: RecordingNotifier, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    _redis(monkeypatch, None)
    result = materialize([org_whatsapp_status, redis_answers_check], resources={"app_db": AppDatabase(database_url=pg_url)})
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed and "embedded in-process cache" in evaluation.metadata["cache"].value
    assert notifier.resolved == [] and notifier.sent == []  # nothing was open


def test_redis_check_resolves_its_own_alert_and_a_legacy_one_not_the_receivers(
    engine: Engine, settings: Settings, notifier: RecordingNotifier, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    resources = {"app_db": AppDatabase(database_url=pg_url)}
    _redis(monkeypatch, CLOSED_REDIS)
    materialize([org_whatsapp_status, redis_answers_check], resources=resources)
    assert [a.fingerprint for a in notifier.sent] == ["redis_down:redis-check"]  # not the receiver's redis_down:redis
    notifier.notify(Alert("redis_down", "redis", "left open by an earlier version of the check"))
    _redis(monkeypatch, REAL_REDIS)
    materialize([org_whatsapp_status, redis_answers_check], resources=resources)
    assert sorted(notifier.resolved) == ["redis_down:redis", "redis_down:redis-check"]
