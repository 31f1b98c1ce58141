"""Dagster resources: the app database (same settings as the receiver)."""


from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from wa_webhook.db.engine import create_processing_engine
from wa_webhook.settings import Settings, get_settings


class AppDatabase(ConfigurableResource):
    """The app database. ``database_url`` overrides ``DATABASE_URL`` (tests use it);
    unset means the service settings (Postgres, or the embedded SQLite file)."""

    database_url: str | None = None
    _engine: Engine | None = PrivateAttr(default=None)

    @property
    def settings(self) -> Settings:
        """Service settings with this resource's URL applied."""
        base = get_settings()
        if self.database_url:
            return base.model_copy(update={"database_url": self.database_url})
        return base

    def get_engine(self) -> Engine:
        """A SQLAlchemy engine, created once per resource instance (i.e. per run)."""
        if self._engine is None:
            extra = {"pool_size": 2, "max_overflow": 2} if self.settings.is_postgres else {}
            self._engine = create_processing_engine(self.settings, **extra)
        return self._engine

    def teardown_after_execution(self, context) -> None:  # noqa: D401 - Dagster hook
        """Dispose of the engine's connections at the end of the run."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
