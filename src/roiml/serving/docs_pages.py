"""The API's documentation pages, Swagger UI and ReDoc, with their scripts served by the API.

FastAPI's defaults load Swagger UI from a CDN (and ReDoc's fonts from Google), so on a server
without internet access the page was blank. The scripts are vendored in ``static/`` (provenance,
licences and checksums in ``static/README.md``) and served under ``<base>/static``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_docs"]

STATIC_DIR = Path(__file__).with_name("static")


def install_docs(app: FastAPI, base: str) -> None:
    """Serve ``<base>/docs`` (Swagger UI), ``<base>/redoc`` and their assets from the package.

    Create ``app`` with ``docs_url=None, redoc_url=None``: these replace FastAPI's pages.
    """
    static = f"{base}/static"
    app.mount(static, StaticFiles(directory=STATIC_DIR), name="docs-static")
    openapi_url = app.openapi_url or f"{base}/openapi.json"
    favicon = f"{static}/favicon-32x32.png"

    @app.get(f"{base}/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get(f"{base}/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{static}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
