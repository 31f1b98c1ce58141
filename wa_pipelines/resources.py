"""Dagster resources: the app database (same settings as the receiver)."""


from dagster import ConfigurableResource
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from wa_core.db.engine import create_processing_engine
from wa_core.settings import Settings, get_settings


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


class MetaGraph(ConfigurableResource):
    """Meta's Graph API. ``graph_api_base_url`` overrides ``GRAPH_API_BASE_URL`` (tests point it
    at the local emulator)."""

    graph_api_base_url: str | None = None

    def client(self):
        """A :class:`~wa_core.meta.graph.client.GraphClient` (use it as a context manager)."""
        from wa_core.meta.graph.client import GraphClient

        settings = get_settings()
        if self.graph_api_base_url:
            settings = settings.model_copy(update={"graph_api_base_url": self.graph_api_base_url})
        return GraphClient.from_settings(settings)


class TokenKeys(ConfigurableResource):
    """The business-token cipher from ``TOKEN_ENCRYPTION_KEY`` (and previous keys)."""

    def cipher(self):
        """A :class:`~wa_core.meta.crypto.TokenCipher`; raises ``InvalidKey`` when unset or malformed."""
        from wa_core.meta.crypto import TokenCipher

        settings = get_settings()
        return TokenCipher.from_hex(
            settings.token_encryption_key.get_secret_value() if settings.token_encryption_key else None,
            settings.token_encryption_previous_keys.get_secret_value() if settings.token_encryption_previous_keys else None,
        )
