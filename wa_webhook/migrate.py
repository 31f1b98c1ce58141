"""Apply Alembic migrations programmatically (``wa-onboarding migrate``)."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from wa_webhook.db.engine import create_sync_engine
from wa_webhook.settings import Settings, get_settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


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


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Wait for the database, then ``alembic upgrade revision``."""
    settings = settings or get_settings()
    wait_for_database(settings)
    engine = create_sync_engine(settings)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(settings)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def downgrade(settings: Settings | None = None, revision: str = "base") -> None:
    """``alembic downgrade revision`` (default: everything)."""
    settings = settings or get_settings()
    engine = create_sync_engine(settings)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(settings)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()
