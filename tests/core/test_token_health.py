"""Token health: the one classifier of a number's token state now, and the alerts a recorded
state raises going through the notifier (one ``token_unhealthy:<phone_number_id>`` per number
in use, resolved once the token is valid again), not a log line of its own."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wa_core.alerts import Alert
from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.schema import TOKEN_HEALTH_STATES, whatsapp_configs
from wa_core.meta.graph.errors import RateLimited, TokenInvalid
from wa_core.settings import Settings
from wa_core.token_health import (
    NEEDS_ACTION,
    NOT_CHECKED,
    TOKEN_STATES,
    UNHEALTHY,
    check_all,
    current_state,
    mark_from_graph_error,
    state_label,
)

WABA, PHONE, PHONE2, GONE = "100000000000031", "200000000000031", "200000000000032", "200000000000033"
DAY = timedelta(days=1)
SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


class Recording:
    """The notifier contract (notify, resolve), remembering the calls."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.resolved: list[str] = []

    def notify(self, alert: Alert) -> bool:
        self.sent.append(alert)
        return True

    def resolve(self, kind: str, key: str) -> bool:
        self.resolved.append(f"{kind}:{key}")
        return True


class Graph:
    """``debug_token`` answering what the test sets."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def debug_token(self, token: str) -> dict[str, Any]:
        return self.data


class Cipher:
    def decrypt(self, value: str, row_id: Any) -> str:
        return "token"


@pytest.fixture()
def connection(engine: Engine) -> Any:
    with engine.begin() as conn:
        org = ensure_organization(conn, "acme", "Acme Store")
        connection_id = bind_waba(conn, org, WABA, [PhoneNumber(PHONE), PhoneNumber(PHONE2), PhoneNumber(GONE)], status="active")
        conn.execute(sa.update(whatsapp_configs).where(whatsapp_configs.c.phone_number_id == GONE).values(status="disconnected"))
        conn.execute(sa.text("UPDATE whatsapp_connections SET business_token_encrypted = 'v1:x:y'"))
    return org, connection_id


def test_one_classifier_reads_the_recorded_state_against_its_expiry() -> None:
    now, soon = datetime(2026, 1, 20, 12, tzinfo=timezone.utc), timedelta(days=7)
    assert current_state(None, None, now, soon) == NOT_CHECKED and state_label(NOT_CHECKED) == "not checked yet"
    assert current_state("valid", now - timedelta(seconds=1), now, soon) == "expired"
    assert current_state("valid", now + 3 * DAY, now, soon) == "expiring_soon"
    assert current_state("expiring_soon", now + 30 * DAY, now, soon) == "valid"
    assert current_state("invalid", now + 30 * DAY, now, soon) == "invalid"
    assert current_state("unknown", None, now, soon) == "unknown"  # the check itself failed
    assert set(TOKEN_STATES) == {*TOKEN_HEALTH_STATES, NOT_CHECKED}
    assert set(UNHEALTHY) == {"expired", "invalid", "missing_permission"} and set(NEEDS_ACTION) == {*UNHEALTHY, "expiring_soon"}


def test_a_graph_190_alerts_through_the_notifier_once_per_number_in_use(
    engine: Engine, settings: Settings, connection, caplog: pytest.LogCaptureFixture
) -> None:
    org, connection_id = connection
    notifier = Recording()
    with caplog.at_level(logging.DEBUG, logger="wa_core.token_health"):
        assert mark_from_graph_error(engine, connection_id, TokenInvalid("Error validating access token", code=190), notifier) == "invalid"
    assert not [r for r in caplog.records if r.name == "wa_core.token_health"]  # no ALERT line of its own
    assert [(a.fingerprint, a.severity, a.organization_id) for a in notifier.sent] == [
        (f"token_unhealthy:{PHONE}", "error", org),
        (f"token_unhealthy:{PHONE2}", "error", org),
    ]  # not the disconnected number
    assert "invalid" in notifier.sent[0].summary and "15550" not in notifier.sent[0].summary
    with engine.connect() as conn:
        assert {r.token_health for r in conn.execute(sa.select(whatsapp_configs))} == {"invalid"}
    # an error that says nothing about the token records and sends nothing
    assert mark_from_graph_error(engine, connection_id, RateLimited("slow down", code=4), notifier) is None
    assert len(notifier.sent) == 2


def test_the_nightly_check_alerts_expiring_tokens_and_resolves_them_once_valid(engine: Engine, settings: Settings, connection) -> None:
    notifier = Recording()
    soon = int(time.time() + 3 * 86400)
    graph = Graph({"is_valid": True, "expires_at": soon, "scopes": SCOPES})
    assert check_all(engine, graph, Cipher(), timedelta(days=7), notifier) == {"expiring_soon": 1}
    assert [(a.key, a.severity) for a in notifier.sent] == [(PHONE, "warning"), (PHONE2, "warning")]
    graph.data = {"is_valid": True, "expires_at": 0, "scopes": SCOPES}  # renewed: never expires
    assert check_all(engine, graph, Cipher(), timedelta(days=7), notifier) == {"valid": 1}
    assert notifier.resolved == [f"token_unhealthy:{PHONE}", f"token_unhealthy:{PHONE2}"] and len(notifier.sent) == 2
    graph.debug_token = lambda token: (_ for _ in ()).throw(RuntimeError("Meta is down"))  # the check fails: unknown
    assert check_all(engine, graph, Cipher(), timedelta(days=7), notifier) == {"unknown": 1}
    assert len(notifier.sent) == 2 and len(notifier.resolved) == 2  # nothing known: nothing sent or resolved
