"""Alembic environment: the URL comes from the service settings, never from alembic.ini."""

from __future__ import annotations

from alembic import context

from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import metadata
from wa_core.settings import get_settings

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    """Emit SQL for the configured database without connecting."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or get_settings().sync_database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection (batch mode so SQLite can ALTER)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_sync_engine(get_settings())
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
