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
from wa_core.settings import Settings, get_settings


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


def test_migrate_creates_a_missing_app_database_or_refuses_in_one_line(capsys) -> None:
    """``wa-onboarding migrate`` on a Postgres database that does not exist creates it (the
    deploy's first step, like ``bin/up``); a user without CREATEDB gets exit 2 and one line at
    once, not a 30 s wait and a traceback."""
    import pytest

    from wa_webhook import cli

    name, role = f"wa_test_mig_{uuid.uuid4().hex[:8]}", f"wa_test_nocreate_{uuid.uuid4().hex[:6]}"
    url = make_url(ADMIN_URL).set(database=name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DATABASE_URL", url.set(username=role).render_as_string(hide_password=False))
            get_settings.cache_clear()
            with pytest.raises(SystemExit) as refused:
                cli.main(["migrate"])
            assert refused.value.code == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f'database "{name}" does not exist' in err and "CREATEDB" in err
            mp.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
            get_settings.cache_clear()
            assert cli.main(["migrate"]) == 0
            assert f"app database '{name}' did not exist: created it" in capsys.readouterr().out
            assert _tables(Settings(database_url=url.render_as_string(hide_password=False))) == set(metadata.tables)
    finally:
        get_settings.cache_clear()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
