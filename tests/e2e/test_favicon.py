"""Every page has an icon: the browser's request for it is answered, never a 404."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Response

from tests.support.servers import ServerProcess

PAGES = ["/", "/demo/shop", "/admin/release", "/console", "/calls"]


@pytest.mark.parametrize("path", ["/favicon.ico", "/favicon.svg"])
def test_the_icon_is_served_as_an_svg(
    browser: Browser, demo_server: ServerProcess, path: str
) -> None:
    context = browser.new_context(base_url=demo_server.url)
    response = context.request.get(path)

    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in response.body()
    context.close()


def test_no_page_answers_404_for_anything_it_loads(
    browser: Browser, demo_server: ServerProcess
) -> None:
    context = browser.new_context(base_url=demo_server.url)
    page = context.new_page()
    missing: list[str] = []

    def note(response: Response) -> None:
        if response.status == 404:
            missing.append(response.url)

    page.on("response", note)
    for path in PAGES:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        icon = page.locator("link[rel=icon]")
        if icon.count():
            href = icon.first.get_attribute("href") or ""
            assert page.request.get(href).status == 200, path
    assert page.request.get("/favicon.ico").status == 200
    assert missing == []
    context.close()
