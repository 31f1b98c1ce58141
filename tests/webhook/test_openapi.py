"""The OpenAPI schema tells the truth: declared security, and a bounded schemathesis run
(every operation, a valid JWT and admin token, in-process on the test database) finds no
undocumented status, no 5xx and no body that does not match its schema."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import jwt
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings as hypothesis_settings
from pydantic import SecretStr

from tests.conftest import APP_SECRET, JWT_SECRET, TOKEN_KEY, VERIFY_TOKEN
from tests.dev.test_simulate import serve
from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import metadata
from wa_core.settings import Settings
from wa_webhook.app import create_app
from wa_webhook.openapi import ADMIN_SCHEME, ORG_SCHEME

ADMIN = "admin-token-for-the-schema-run"
#: examples per operation: bounded so the run stays well under a minute on a busy 2-core machine
#: (SCHEMA_EXAMPLES=N for a deeper run by hand)
EXAMPLES = int(os.environ.get("SCHEMA_EXAMPLES", "6"))
#: Every other check runs (no 5xx, every status, content type, header and body as declared,
#: auth enforced, undeclared methods 405 with Allow). These two judge whether input is valid
#: by the JSON Schema alone: the API's cross-field and semantic rules (exactly one of
#: organization/waba_id, a time window's order, an opaque cursor, a known event type) answer
#: a declared 422 that JSON Schema cannot express, and pydantic's documented lax parsing
#: accepts e.g. a number of seconds for a date-time and ignores unknown query parameters.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]


def _settings(database_url: str | None = None, **extra) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        meta_app_secret=SecretStr(APP_SECRET),
        meta_webhook_verify_token=SecretStr(VERIFY_TOKEN),
        token_encryption_key=SecretStr(TOKEN_KEY),
        jwt_secret=SecretStr(JWT_SECRET),
        admin_api_token=SecretStr(ADMIN),
        api_docs="on",
        **extra,
    )


# the schema does not depend on the database: load it once, at collection
schema = schemathesis.openapi.from_dict(create_app(_settings()).openapi())


def org_token(org: str = "schema-org") -> str:
    return jwt.encode({"org_id": org, "sub": "schemathesis", "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def base_url(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a fresh test database, served by uvicorn in a thread of this process."""
    settings = _settings(
        pg_url,
        data_dir=tmp_path_factory.mktemp("schema"),
        rate_limit_prefix=f"wa-schema-{time.time_ns()}",
        api_ip_limit="100000/minute",
        api_org_limit="100000/minute",
    )
    engine = create_sync_engine(settings)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()
    with serve(create_app(settings)) as base:
        yield base


def _auth(case) -> dict[str, str]:
    names = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
    if ADMIN_SCHEME in names:
        return {"Authorization": f"Bearer {ADMIN}"}
    if ORG_SCHEME in names:
        return {"Authorization": f"Bearer {org_token()}"}
    return {}


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_as_its_schema_says(case, base_url: str) -> None:
    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), (int, float)):
        case.query["wait"] = min(case.query["wait"], 0.05)  # the events long poll: tested in test_events_api
    case.call_and_validate(base_url=base_url, headers=_auth(case), excluded_checks=EXCLUDED_CHECKS)


def test_schema_declares_both_security_schemes_and_the_receiver_answers() -> None:
    doc = create_app(_settings()).openapi()
    schemes = doc["components"]["securitySchemes"]
    assert schemes[ORG_SCHEME]["bearerFormat"] == "JWT" and schemes[ADMIN_SCHEME]["scheme"] == "bearer"
    assert doc["paths"]["/api/admin/whatsapp/status"]["get"]["security"] == [{ADMIN_SCHEME: []}]
    assert doc["paths"]["/api/v1/whatsapp/check-connection"]["get"]["security"] == [{ORG_SCHEME: []}]
    assert {"200", "401", "408", "413", "429", "503"} <= set(doc["paths"]["/api/v1/whatsapp/webhook"]["post"]["responses"])
    replay_422 = doc["paths"]["/api/admin/whatsapp/webhooks/replay"]["post"]["responses"]["422"]
    assert replay_422["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationOrRouteError")
