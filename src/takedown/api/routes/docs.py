"""The API reference page at ``/docs``, working without the internet.

FastAPI's own page loads Swagger UI's script and style from a CDN, so on a machine
without internet access (or behind a strict proxy) it stays blank. The same Swagger UI
build ships in the ``swagger-ui-bundle-v2`` wheel (the bundle Connexion uses); Takedown
serves those files itself under ``/docs/assets`` and points the page at them."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title}: reference"

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    app.add_api_route("/docs", swagger_ui, include_in_schema=False, methods=["GET"])
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
