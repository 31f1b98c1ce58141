"""The API docs (``/docs``, ``/redoc``, ``/openapi.json``), served with local assets.

``API_DOCS`` (:class:`wa_core.settings.Settings`): ``on`` serves them to anyone, ``admin``
only with ``Authorization: Bearer <ADMIN_API_TOKEN>`` (401 without a bearer token, 403 with
another, 503 when no admin token is set), ``off`` (the default) answers 404. The Swagger UI
and ReDoc files come from the ``fastapi-offline`` package and are served by this process
under ``/docs-assets/`` (no CDN: the pages work offline and no third party sees who reads
them). The asset files are public in every mode but ``off``: they are the packages'
own files and say nothing about this API.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from wa_webhook.routes.admin import require_admin

#: Swagger UI, ReDoc and a favicon, shipped as package data of ``fastapi-offline`` (MIT)
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
OPENAPI_URL = "/openapi.json"
#: ReDoc's footer links a logo on Redocly's CDN: images from our origin only, so the page
#: makes no request elsewhere (its scripts and styles are ours; it runs a blob: worker)
REDOC_CSP = "img-src 'self' data:"


def install_api_docs(app: FastAPI, mode: str) -> None:
    """Add the docs routes to ``app`` for ``mode`` (``on``, ``admin`` or ``off``).

    The app must be built with ``docs_url=None, redoc_url=None, openapi_url=None`` (FastAPI's
    own pages load their assets from a CDN). With ``off`` nothing is added: the three paths
    answer 404 like any unknown path.
    """
    if mode == "off":
        return
    dependencies = [Depends(require_admin)] if mode == "admin" else []
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(OPENAPI_URL, include_in_schema=False, dependencies=dependencies)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{OPENAPI_URL}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page
