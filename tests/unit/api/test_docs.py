"""``/docs`` works without internet: the page and everything it loads come from the API itself."""

from __future__ import annotations

import re

from tests.unit.api.conftest import AppFactory, client_for

# src= and href= of the page, and the url: Swagger UI is told to fetch the document from.
_REFERENCES = re.compile(r"""(?:src|href)="([^"]*)"|\burl: '([^']*)'""")


async def test_docs_reference_only_this_origin_and_each_file_answers_with_its_type(
    make_app: AppFactory,
) -> None:
    async with client_for(make_app(), None) as c:
        page = await c.get("/docs")
        urls = [a or b for a, b in _REFERENCES.findall(page.text)]
        loaded = {url: await c.get(url) for url in urls}

    assert page.status_code == 200
    # Before, the script and styles came from cdn.jsdelivr.net and the icon from fastapi.tiangolo.com.
    assert sorted(urls) == [
        "/docs/static/favicon-32x32.png",
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/swagger-ui.css",
        "/openapi.json",
    ]
    assert {url: (r.status_code, r.headers["content-type"]) for url, r in loaded.items()} == {
        "/docs/static/favicon-32x32.png": (200, "image/png"),
        "/docs/static/swagger-ui-bundle.js": (200, "text/javascript; charset=utf-8"),
        "/docs/static/swagger-ui.css": (200, "text/css; charset=utf-8"),
        "/openapi.json": (200, "application/json"),
    }
    assert b"SwaggerUIBundle" in loaded["/docs/static/swagger-ui-bundle.js"].content
    # The files are the package's, the same for everyone: cacheable, unlike the API's answers.
    assert "Cache-Control" not in loaded["/docs/static/swagger-ui.css"].headers


async def test_redoc_is_not_served_since_it_would_load_from_a_cdn(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as c:
        resp = await c.get("/redoc")

    assert resp.status_code == 404
