"""The FastAPI application: ``create_app()`` wires settings, the landing store and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from wa_webhook.db.landing import create_landing_store
from wa_webhook.logs import configure_logging
from wa_webhook.routes import admin, health, webhook
from wa_webhook.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the receiver app for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.landing = create_landing_store(settings)
        app.state.admin_engine = None
        try:
            yield
        finally:
            await app.state.landing.close()
            if app.state.admin_engine is not None:
                app.state.admin_engine.dispose()

    app = FastAPI(
        title="WhatsApp onboarding and webhook receiver",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(webhook.router)
    app.include_router(admin.router)
    return app
