"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import wa_webhook.metrics  # noqa: F401  (registers the receiver metrics)

from wa_core.db.landing import LandingUnavailable

log = logging.getLogger("wa_webhook.health")

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Process is up (no dependency checked)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers and the landing table exists, else 503 with the reason."""
    try:
        await request.app.state.landing.ping()
    except LandingUnavailable as exc:
        log.warning("readiness check failed: %s", exc)  # details in the log, not to the caller
        return JSONResponse({"status": "unavailable", "database": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Prometheus metrics of this process (see :mod:`wa_webhook.metrics`)."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
