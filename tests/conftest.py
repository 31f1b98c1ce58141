"""Shared test fixtures: a real Postgres database per test session, the fixture corpus, settings.

The session (each pytest-xdist worker is a session of its own) creates its own database
(``wa_test_<random>``) on the Postgres given by ``TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), migrates it to head, empties the tables
before each test that uses it, and drops it at the end. It never touches a database it did not
create. The hooks at the end keep pytest-xdist's workers honest (docs/development.md).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import metadata
from wa_core.db.migrate import upgrade
from wa_core.settings import Settings, get_settings

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
APP_SECRET = "test_app_secret_not_real"  # the secret the fixture signatures were made with
VERIFY_TOKEN = "test-verify-token"
TOKEN_KEY = "11" * 32  # TOKEN_ENCRYPTION_KEY of the tests
JWT_SECRET = "test-jwt-secret-with-enough-length-32b"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh, migrated Postgres database owned by this test session."""
    name = f"wa_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(Settings(database_url=url))
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def settings(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings on the session's Postgres database, also exported to the environment."""
    env = {
        "DATABASE_URL": pg_url,
        "META_APP_SECRET": APP_SECRET,
        "META_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "WA_DATA_DIR": str(tmp_path),
        "PROCESSING_RETRY_BASE_SECONDS": "30",
        "TOKEN_ENCRYPTION_KEY": TOKEN_KEY,
        "JWT_SECRET": JWT_SECRET,
        "REGISTER_PIN": "123456",
        "RATE_LIMIT_PREFIX": f"wa-test-{uuid.uuid4().hex[:8]}",  # counters never leak between tests
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


# one round trip: which of the schema's tables hold a row (EXISTS stops at the first)
_NON_EMPTY = " UNION ALL ".join(f"SELECT '{t.name}' WHERE EXISTS (SELECT FROM {t.name})" for t in metadata.sorted_tables)
# sequences read since their last reset (pg_sequences.last_value is NULL until nextval)
_USED_SEQUENCES = "SELECT format('%I.%I', schemaname, sequencename), start_value FROM pg_sequences WHERE last_value IS NOT NULL"


def empty_database(conn: sa.Connection) -> list[str]:
    """Empty every table of the schema and restart every used sequence, as
    ``TRUNCATE … RESTART IDENTITY CASCADE`` of all tables would, in a few milliseconds.

    Only the tables that hold a row are touched, with ``DELETE`` children first (the order of
    ``metadata.sorted_tables``, reversed): on a test database with a handful of rows that is
    ~50x faster than truncating the 41 tables, each of which makes new files for the table and
    its indexes. ``alembic_version`` is not in the schema's metadata and is kept. Returns the
    names of the tables that held rows."""
    non_empty = {row[0] for row in conn.execute(sa.text(_NON_EMPTY))}
    for table in reversed(metadata.sorted_tables):
        if table.name in non_empty:
            conn.execute(table.delete())
    for sequence, start in conn.execute(sa.text(_USED_SEQUENCES)).all():
        conn.execute(sa.text("SELECT setval(:s, :v, false)"), {"s": sequence, "v": start})
    return sorted(non_empty)


@pytest.fixture()
def engine(settings: Settings) -> Iterator[Engine]:
    """Engine on an emptied test database (no rows, every id sequence at its start)."""
    eng = create_sync_engine(settings)
    with eng.begin() as conn:
        empty_database(conn)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def signatures() -> dict[str, str]:
    """``X-Hub-Signature-256`` per fixture file, signed with :data:`APP_SECRET`."""
    return json.loads((FIXTURES / "signatures.json").read_text())


@pytest.fixture(scope="session")
def expected() -> dict[str, dict]:
    """What each fixture should produce (wamids, statuses, events), see fixtures README."""
    return json.loads((FIXTURES / "expected.json").read_text())


def fixture_bytes(name: str) -> bytes:
    """Exact bytes of one fixture body."""
    return (FIXTURES / name).read_bytes()


def _utf8_safe(value: object) -> object:
    """``value`` with every string that UTF-8 cannot encode (a lone surrogate) backslash-escaped,
    through dicts, lists and tuples; anything else as it is."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_utf8_safe(v) for v in value)
    return value


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: object) -> Iterator[object]:
    """A pytest-xdist worker sends each report to the controller through execnet, which refuses
    strings UTF-8 cannot encode (pytest-xdist issue #843): a test whose captured log holds a
    lone surrogate (the poison-value tests log one in an alert line) would crash the worker.
    The serialised report's strings are escaped instead (``\\ud800``), as a terminal shows them."""
    data = yield
    return _utf8_safe(data) if data is not None else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every collected test a node id of its own.

    schemathesis (4.x) builds one item per API operation, named ``test_…[GET /healthz]``, but
    under pytest 9 their node ids all read ``…::test_every_operation_answers_as_its_schema_says``:
    pytest 9 derives an item's id from its ``originalname`` and parametrization, and schemathesis
    passes neither. pytest-xdist schedules ``--dist loadgroup`` by node id, so it ran one of the 33
    operations and reported the suite green. Such an item gets its name (with the operation) as
    its id; any duplicate left is a usage error, never a silently smaller run."""
    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1 and "[" in item.name and item.parent is not None:
            base, _, params = item.name.partition("[")
            item._id = item.parent.id.child(base).with_params(params.removesuffix("]"))  # noqa: SLF001
    duplicates = sorted(nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1)
    if duplicates:
        raise pytest.UsageError(f"tests share a node id (pytest-xdist would run only one of each): {duplicates[:5]}")
