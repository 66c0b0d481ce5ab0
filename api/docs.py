"""The OpenAPI reference on ``/docs``, with Swagger UI's script and styles served by the API itself.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN, so it stayed blank on a machine without
internet (and behind proxies that block CDNs). The files come from the ``swagger-ui-bundle-v2``
package (Swagger UI 5, which renders OpenAPI 3.1) and are served under :data:`DOCS_STATIC`, so the
page references only this origin. ``/redoc`` is not served: it would load ReDoc from a CDN.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_URL = "/docs"
DOCS_STATIC = "/docs/static"


def install_docs(app: FastAPI) -> None:
    """Serve the Swagger UI page on :data:`DOCS_URL` and its files under :data:`DOCS_STATIC`.

    The app must be built with ``docs_url=None`` and ``redoc_url=None``, so that FastAPI adds no
    page of its own.
    """
    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} — API reference"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )
