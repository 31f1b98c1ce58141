"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import wa_webhook.metrics  # noqa: F401  (registers the receiver metrics)

from wa_core.db.landing import LandingUnavailable
from wa_core.meta.signature import tokens_equal

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
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics of this process (see :mod:`wa_webhook.metrics`).

    With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <METRICS_TOKEN>`` reads them
    (401 without a bearer token, 403 with another); unset, they are public (the demo).
    """
    expected = request.app.state.settings.metrics_token
    if expected is not None and expected.get_secret_value():
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse({"detail": "metrics bearer token required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if not tokens_equal(token.strip(), expected.get_secret_value()):
            return JSONResponse({"detail": "not the metrics token"}, status_code=403)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
