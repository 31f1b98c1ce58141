"""Apply Alembic migrations programmatically (``wa-onboarding migrate``)."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from wa_core.db.engine import create_sync_engine
from wa_core.settings import Settings, get_settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(settings: Settings | None = None) -> Config:
    """Alembic config pointing at ``migrations/`` with the settings' database URL."""
    settings = settings or get_settings()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.sync_database_url.replace("%", "%%"))
    return cfg


def wait_for_database(settings: Settings, timeout_seconds: float = 30.0) -> None:
    """Block until the database accepts connections; raise ``RuntimeError`` after the timeout."""
    engine = create_sync_engine(settings)
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return
            except sa.exc.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"database not reachable after {timeout_seconds:.0f}s: {exc}") from exc
                time.sleep(1)
    finally:
        engine.dispose()


def _run(settings: Settings, step, revision: str) -> None:
    engine = create_sync_engine(settings)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(settings)
            cfg.attributes["connection"] = conn
            step(cfg, revision)
    finally:
        engine.dispose()


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Wait for the database, then ``alembic upgrade revision``."""
    settings = settings or get_settings()
    wait_for_database(settings)
    _run(settings, command.upgrade, revision)


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    """``alembic downgrade revision`` (default: everything)."""
    _run(settings or get_settings(), command.downgrade, revision)


class NotMigrated(RuntimeError):
    """The app database does not exist or is not at the latest migration."""


def require_migrated(settings: Settings) -> None:
    """Raise :class:`NotMigrated` with a clear next step unless the schema is at head.

    Never creates anything: a command run from the wrong folder must not leave an empty
    SQLite file behind.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    if not settings.is_postgres and not settings.sqlite_path.exists():
        raise NotMigrated(
            f"no database at {settings.sqlite_path.resolve()}: set WA_DATA_DIR (or DATABASE_URL) to where "
            "`bin/up` (`wa-dev up`) or `wa-onboarding migrate` ran, or run `wa-onboarding migrate`"
        )
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise NotMigrated(f"cannot reach the database: {str(exc.orig).strip().splitlines()[0]}") from exc
    finally:
        engine.dispose()
    if current != head:
        raise NotMigrated(f"the database is at migration {current or 'none'}, not {head}: run `wa-onboarding migrate`")
