"""The FastAPI application: ``create_app()`` wires settings, the landing store and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from wa_core.alerts import get_notifier
from wa_core.db.engine import create_sync_engine
from wa_core.db.landing import create_landing_store
from wa_core.explorer.rejections import RejectionRecorder
from wa_core.logs import configure_logging
from wa_core.ratelimit import RateLimiter
from wa_webhook.events_wait import EventWaiter
from wa_webhook.routes import (
    admin, admin_page, coexistence_admin, doctor_admin, events, events_admin, explorer_admin, health, media, onboarding, page, processing_admin, read_api,
    webhook,
)
from wa_webhook.openapi import install_openapi
from wa_webhook.routes.docs import install_api_docs
from wa_webhook.delivery import BodyReads, DeliveryContext, handle_delivery, scan_headers, send_answer
from wa_webhook.routes.webhook import WEBHOOK_PATH
from wa_core.meta.crypto import TokenCipher
from wa_core.gc_tuning import freeze_once
from wa_core.settings import Settings, get_settings

log = logging.getLogger("wa_webhook.app")


class ReceiverApp(FastAPI):
    """The FastAPI app, with Meta's deliveries (``POST /api/v1/whatsapp/webhook``) handed
    straight to :func:`~wa_webhook.delivery.handle_delivery` as raw ASGI.

    A delivery needs none of what the framework's stack does per request (error and exception
    middleware, routing through every route, dependency solving, request and response objects):
    measured, that stack cost about as much CPU as the whole minimal durable receiver
    (``docs/benchmarks.md``, "receiver vs minimal durable receiver"). The route stays
    registered, so the OpenAPI schema and any request that does not match exactly (a
    ``root_path`` prefix, a browser's ``Origin`` that the CORS middleware must answer) take the
    full stack, with the same handler. An unexpected exception reaches uvicorn, which logs it
    and answers 500, as the error middleware would.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            headers = scan_headers(scope)
            if not headers.origin:
                scope["app"] = self
                await send_answer(send, await handle_delivery(scope, receive, self.state.delivery, headers))
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the receiver app for ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    configure_logging()
    for warning in settings.startup_warnings():
        log.warning(warning)
    # A missing or malformed TOKEN_ENCRYPTION_KEY stops start-up here, with a clear message.
    cipher = TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.cipher = cipher
        app.state.rate_limiter = RateLimiter(settings.redis_url, settings.rate_limit_prefix, notifier=get_notifier(settings))
        app.state.landing = create_landing_store(settings)
        app.state.body_reads = BodyReads(settings.webhook_max_concurrent_bodies)

        def graph():
            """A Graph API client (onboarding routes; imported on first use)."""
            from wa_core.meta.graph.client import GraphClient

            return GraphClient.from_settings(settings)

        app.state.graph = graph
        engines: list = []

        def api_engine():
            """The synchronous engine of the API routes (created on first use)."""
            if not engines:
                extra = {"pool_size": 3, "max_overflow": 2} if settings.is_postgres else {}
                engines.append(create_sync_engine(settings, **extra))
            return engines[0]

        app.state.api_engine = api_engine
        app.state.event_waiter = EventWaiter(settings)
        app.state.rejections = RejectionRecorder(
            api_engine,
            settings.webhook_rejections_recorded_per_minute,
            settings.webhook_rejection_alert_per_minute,
            lambda alert: get_notifier(settings, api_engine()).notify(alert),
        )
        app.state.delivery = DeliveryContext(settings, app.state.landing, app.state.body_reads, app.state.rejections, app.state.rate_limiter)
        freeze_once()  # the process's long-lived objects out of the collector's way (p99)
        try:
            yield
        finally:
            await app.state.rejections.close()
            await app.state.event_waiter.close()
            await app.state.landing.close()
            for engine in engines:
                engine.dispose()

    app = ReceiverApp(
        title="WhatsApp onboarding and webhook receiver",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by wa_webhook.routes.docs with local assets, per API_DOCS
        redoc_url=None,
        openapi_url=None,
    )
    install_openapi(app)
    origins = [o.strip() for o in settings.cors_allowed_origins.split(",") if o.strip()]
    if origins:  # only the configured web app origins; never "*" with credentials
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.include_router(health.router)
    app.include_router(webhook.router)
    app.include_router(onboarding.router)
    app.include_router(page.router)
    app.include_router(admin.router)
    app.include_router(doctor_admin.router)
    app.include_router(processing_admin.router)
    app.include_router(coexistence_admin.router)
    app.include_router(events.router)
    app.include_router(events_admin.router)
    app.include_router(media.router)
    app.include_router(explorer_admin.router)
    app.include_router(read_api.router)
    app.include_router(admin_page.router)
    install_api_docs(app, settings.api_docs)
    return app
