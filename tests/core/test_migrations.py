"""Alembic migrations run both ways on Postgres and on the embedded SQLite."""

from __future__ import annotations

import uuid

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_URL
from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import metadata
from wa_core.db.migrate import downgrade, upgrade
from wa_core.settings import Settings


def _tables(settings: Settings) -> set[str]:
    engine = create_sync_engine(settings)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_postgres() -> None:
    name = f"wa_test_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        settings = Settings(database_url=make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False))
        upgrade(settings)
        assert _tables(settings) == set(metadata.tables)
        downgrade(settings, "base")
        assert _tables(settings) == set()
        upgrade(settings)
        assert _tables(settings) == set(metadata.tables)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_downgrade_on_sqlite(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=None)
    upgrade(settings)
    assert _tables(settings) == set(metadata.tables)
    downgrade(settings, "base")
    assert _tables(settings) == set()


def test_models_match_the_migrations(pg_url: str) -> None:
    """Autogenerate finds nothing to add: schema.py and migrations/ agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_sync_engine(Settings(database_url=pg_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []
