"""``/docs`` in a real browser with no internet: every file the page needs comes from
Takedown itself (Swagger UI's files ship in a Python package), none from a CDN."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def test_the_api_reference_renders_with_no_request_leaving_the_server(
    browser: Any, live_url: str
) -> None:
    own = urlsplit(live_url).netloc
    elsewhere: list[str] = []

    def only_takedown(route: Any) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:  # as on a machine with no internet: the request fails
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context()
    context.route("**/*", only_takedown)
    page = context.new_page()
    try:
        response = page.goto(f"{live_url}/docs")
        assert response is not None and response.status == 200
        # Swagger UI ran: the API's title and an operation from the OpenAPI document.
        page.wait_for_selector(".swagger-ui .info .title")
        assert "Takedown API" in page.inner_text(".swagger-ui .info .title")
        page.wait_for_selector('.opblock-summary-path[data-path^="/v1/"]')
        assert elsewhere == []
    finally:
        context.close()


def test_the_assets_are_served_and_redoc_is_not_half_there(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/redoc").status_code == 404  # a CDN-only page is not offered
