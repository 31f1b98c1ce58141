"""Apply Alembic migrations programmatically (``wa-onboarding migrate``)."""

from __future__ import annotations

import re
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


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (drivers append hints and context on more lines),
    or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DatabaseUnavailable(RuntimeError):
    """The database cannot be used: not reachable within the wait, or missing and not
    creatable; the message is one line saying why and what to do."""


def ensure_postgres_database(url: str) -> bool:
    """Create the Postgres database named in ``url`` if it does not exist (the user needs
    CREATEDB); True when it was created. Raises ``psycopg.Error`` when the server cannot be
    reached or refuses."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
    return not exists


def _missing_database(exc: sa.exc.OperationalError) -> bool:
    """Whether the server answered that the database does not exist (SQLSTATE 3D000; libpq
    gives no SQLSTATE for a failed connection, only the server's ``FATAL: database "…" does
    not exist``)."""
    return getattr(exc.orig, "sqlstate", None) == "3D000" or bool(_MISSING.search(str(exc.orig)))


_MISSING = re.compile(r'FATAL:\s+database "[^"]*" does not exist')


def wait_for_database(settings: Settings, timeout_seconds: float = 30.0) -> None:
    """Block until the database accepts connections (a server still starting is waited for).

    Raises :class:`DatabaseUnavailable` after ``timeout_seconds``, and at once when the server
    answers that the database does not exist (no point waiting for it)."""
    engine = create_sync_engine(settings)
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
                return
            except sa.exc.OperationalError as exc:
                first = first_line(exc.orig)
                if _missing_database(exc):
                    raise DatabaseUnavailable(first) from exc
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"database not reachable after {timeout_seconds:.0f}s: {first}") from exc
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


def upgrade(settings: Settings | None = None, revision: str = "head", create_missing: bool = True) -> bool:
    """Wait for the database, create it when Postgres says it does not exist (and
    ``create_missing``), then ``alembic upgrade revision``. True when the database was created.

    Raises :class:`DatabaseUnavailable` (one line) when the database cannot be reached, or is
    missing and cannot be created (no CREATEDB right)."""
    import psycopg

    settings = settings or get_settings()
    created = False
    try:
        wait_for_database(settings)
    except DatabaseUnavailable as exc:
        if not (create_missing and settings.is_postgres and isinstance(exc.__cause__, sa.exc.OperationalError) and _missing_database(exc.__cause__)):
            raise
        try:
            created = ensure_postgres_database(settings.database_url)
        except psycopg.Error as create_exc:
            raise DatabaseUnavailable(
                f"{exc}, and it cannot be created ({first_line(create_exc)}): create it yourself or give the user CREATEDB"
            ) from create_exc
        wait_for_database(settings)
    _run(settings, command.upgrade, revision)
    return created


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
        raise NotMigrated(f"cannot reach the database: {first_line(exc.orig)}") from exc
    finally:
        engine.dispose()
    if current != head:
        raise NotMigrated(f"the database is at migration {current or 'none'}, not {head}: run `wa-onboarding migrate`")
