"""The OpenAPI schema as the app really behaves: security schemes and every answer.

FastAPI derives operations, parameters and 200/422 bodies from the routes; this module adds
what it cannot see: the two security schemes (``organizationJWT``, the SaaS's bearer JWT of
``/api/v1/whatsapp/*``; ``adminToken``, ``ADMIN_API_TOKEN`` of ``/api/admin/*``), the
error answers of the authentication dependencies and of each route (:data:`ROUTE_ERRORS`),
the real shape of a 422 (a validation error list, or one message from the route), and
Meta's webhook endpoint (raw signed body in, plain text out). ``tests/webhook/test_openapi.py``
checks the result against the app with schemathesis.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

ORG_SCHEME = "organizationJWT"
ADMIN_SCHEME = "adminToken"

SECURITY_SCHEMES = {
    ORG_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "JWT minted by the SaaS (HS256 with JWT_SECRET, or RS256/ES256); the organization is in JWT_ORG_CLAIM.",
    },
    ADMIN_SCHEME: {"type": "http", "scheme": "bearer", "description": "ADMIN_API_TOKEN of the operators."},
}

REASONS = {
    400: "Bad request",
    401: "No bearer token, or an invalid, expired or unreadable one",
    403: "A valid token that may not do this",
    404: "Not found",
    408: "The body was not read within WEBHOOK_BODY_TIMEOUT_SECONDS",
    409: "Conflict with the current state",
    410: "Expired",
    413: "Body over WEBHOOK_MAX_BODY_BYTES",
    422: "Invalid parameters or body",
    429: "Rate limited (see Retry-After)",
    502: "Meta refused or failed",
    503: "Not configured, or a dependency (database) unavailable",
}

#: errors every operation of one family can answer (its authentication dependency)
ORG_ERRORS = (401, 403, 429, 503)
ADMIN_ERRORS = (401, 403, 503)

#: errors a route itself answers, by (method, path)
ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/api/v1/whatsapp/onboarding/{tracking_code}/session"): (404, 409, 410, 422, 502),
    ("get", "/api/v1/whatsapp/onboarding/{tracking_code}"): (404,),
    ("delete", "/api/v1/whatsapp/connections/{connection_id}"): (404,),
    ("get", "/api/v1/whatsapp/media/{media_id}"): (404, 409),
    ("get", "/api/v1/whatsapp/conversations"): (404, 422),
    ("get", "/api/v1/whatsapp/conversations/{conversation_id}/messages"): (404, 422),
    ("get", "/api/v1/whatsapp/contacts/{contact_id}"): (404, 422),
    ("get", "/api/v1/whatsapp/events"): (422,),
    ("get", "/api/admin/whatsapp/status"): (404, 422),
    ("post", "/api/admin/whatsapp/webhooks/replay"): (404, 422),
    ("post", "/api/admin/whatsapp/wabas/{waba_id}/assign"): (404, 409, 422),
    ("get", "/api/admin/whatsapp/webhooks"): (422,),
    ("get", "/api/admin/whatsapp/webhooks/{webhook_id}/trace"): (404,),
    ("get", "/api/admin/whatsapp/numbers/{phone_number_id}/syncs"): (404,),
    ("post", "/api/admin/whatsapp/numbers/{phone_number_id}/syncs/{sync_type}/request"): (404, 409, 502),
    ("put", "/api/admin/whatsapp/events/{org}/endpoint"): (404, 422),
    ("post", "/api/admin/whatsapp/events/{org}/endpoint/rotate"): (404, 422),
    ("post", "/api/admin/whatsapp/events/{org}/endpoint/disable"): (404, 422),
    ("get", "/api/admin/whatsapp/events/{org}/endpoint"): (404, 422),
    ("post", "/api/admin/whatsapp/events/{org}/replay"): (404, 422),
    ("post", "/api/admin/whatsapp/processing/pause"): (404, 422),
    ("post", "/api/admin/whatsapp/processing/resume"): (404, 422),
    ("put", "/api/admin/whatsapp/processing/caps"): (404, 422),
    ("get", "/readyz"): (503,),
}

WEBHOOK_PATH = "/api/v1/whatsapp/webhook"

_ERROR_SCHEMA = {
    "title": "HTTPError",
    "type": "object",
    "properties": {"detail": {"description": "a message, or an object with code and message"}},
    "required": ["detail"],
}
_VALIDATION_SCHEMA = {
    "title": "ValidationOrRouteError",
    "type": "object",
    "properties": {
        "detail": {
            "anyOf": [
                {"type": "string", "description": "what the route refused"},
                {"type": "object", "description": "code and message"},
                {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
            ]
        }
    },
    "required": ["detail"],
}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _json_error(status: int) -> dict[str, Any]:
    return {"description": REASONS[status], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPError"}}}}


def _webhook(paths: dict[str, Any]) -> None:
    """Meta's endpoint: plain-text answers, the raw signed body (webhook.py's docstrings)."""
    item = paths.get(WEBHOOK_PATH, {})
    if "get" in item:
        item["get"]["responses"] = {
            "200": _text("hub.challenge echoed"),
            "400": _text("hub.challenge missing or malformed"),
            "403": _text("wrong verify token or mode"),
            "422": item["get"]["responses"].get("422", {"description": REASONS[422]}),
            "503": _text("META_WEBHOOK_VERIFY_TOKEN not set"),
        }
    if "post" in item:
        op = item["post"]
        op["parameters"] = [
            {
                "name": "X-Hub-Signature-256",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "sha256=<hex HMAC-SHA256 of the raw body with the app secret>",
            }
        ]
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "description": "Meta's event notification, landed as raw bytes"}}},
        }
        op["responses"] = {
            "200": _text("EVENT_RECEIVED: the exact bytes are committed"),
            "400": _text("the sender hung up before the body was complete"),
            "401": _text("X-Hub-Signature-256 missing, malformed or not matching"),
            "408": _text(REASONS[408]),
            "413": _text(REASONS[413]),
            "429": _text("too many invalid deliveries from this address"),
            "503": _text("META_APP_SECRET not set, receiver busy, or the database unavailable (Meta redelivers)"),
        }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (a dict), with security and every answer declared."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    schemas["HTTPError"] = _ERROR_SCHEMA
    schemas["ValidationOrRouteError"] = _VALIDATION_SCHEMA
    schemas.setdefault(
        "ValidationError",
        {"type": "object", "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}, "type": {"type": "string"}}},
    )
    paths = schema.get("paths", {})
    for path, item in paths.items():
        for method, op in item.items():
            if path == WEBHOOK_PATH:
                continue
            if path.startswith("/api/admin/"):
                op["security"], family = [{ADMIN_SCHEME: []}], ADMIN_ERRORS
            elif path.startswith("/api/v1/"):
                op["security"], family = [{ORG_SCHEME: []}], ORG_ERRORS
            else:
                family = ()
            responses = op.setdefault("responses", {})
            for status in (*family, *ROUTE_ERRORS.get((method, path), ())):
                responses.setdefault(str(status), _json_error(status))
            if "requestBody" in op:  # a body that is not JSON at all: FastAPI's 400
                responses.setdefault("400", _json_error(400))
            if "422" in responses:
                responses["422"] = {
                    "description": REASONS[422],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationOrRouteError"}}},
                }
    _webhook(paths)
    return schema


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's HTTP error answer, except that a 405's ``Allow`` lists every method the path
    has (Starlette lists only the first route matching the path: RFC 9110 §15.5.6)."""
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(sorted(methods))})


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return :func:`build_openapi` (computed once, then cached), and
    answer a 405 with the path's real ``Allow`` header."""
    app.add_exception_handler(StarletteHTTPException, _http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
