"""The OpenAPI pages (/docs, /redoc) with their assets served by the service itself.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so they stay blank on a network
without internet (a hospital intranet, a laptop on a train). The assets ship in the
``fastapi-offline`` package and are mounted at ``/docs-assets``.

Examples
--------
>>> from fastapi import FastAPI
>>> app = FastAPI(docs_url=None, redoc_url=None)
>>> install_docs(app)
>>> sorted(r.path for r in app.routes if r.path.startswith(("/docs", "/redoc")))
['/docs', '/docs-assets', '/docs/oauth2-redirect', '/redoc']
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
# Nothing but this server: the pages' own inline start-up scripts, the local assets, the schema.
# (ReDoc's bundle would fetch its logo from a CDN otherwise.)
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _local(response):
    response.headers["Content-Security-Policy"] = CSP
    return response


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from local assets (create the app
    with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    def _root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def swagger(request: Request):
        root = _root(request)
        return _local(
            get_swagger_ui_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    async def oauth2_redirect(request: Request):
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request):
        root = _root(request)
        return _local(
            get_redoc_html(
                openapi_url=f"{root}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )

    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/docs/oauth2-redirect", oauth2_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
