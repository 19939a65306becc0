"""/docs and /redoc render in headless Chromium with every request off this machine refused.

A network without internet (a hospital intranet) is simulated by aborting any request whose host
is not the loopback server; the pages must still show the API's operations.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.e2e.test_participant_form import CHROMIUM, FLAGS, SHOTS, server  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (make browser)")


def test_docs_pages_serve_their_own_assets(client):
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        assert "cdn." not in html and "fonts.googleapis" not in html and "https://" not in html, path
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


def test_docs_and_redoc_render_without_internet(server, browser):  # noqa: F811
    base, _ = server
    host = urlparse(base).netloc
    refused: list[str] = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})

    def offline(route):
        if urlparse(route.request.url).netloc == host:
            return route.continue_()
        refused.append(route.request.url)
        return route.abort()

    ctx.route("**/*", offline)
    page = ctx.new_page()
    page.goto(f"{base}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() >= 25
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "docs-offline.png"))
    page.goto(f"{base}/redoc")
    page.wait_for_selector("[data-section-id]", timeout=30_000)
    assert page.locator("[data-section-id]").count() >= 25
    page.screenshot(path=str(SHOTS / "redoc-offline.png"))
    ctx.close()
    assert refused == []
