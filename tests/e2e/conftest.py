"""Browser fixtures: a real `parley serve --demo` process and Debian's Chromium under Playwright.

Playwright's sync API is used on purpose: these tests are plain functions, so no asyncio loop
is running while Playwright drives its own, and pytest-asyncio's auto mode leaves them alone.
`playwright install` cannot download browsers here, so the system Chromium is launched by path.
Without it the tests skip locally and fail in CI (CI=true).

They run on the xdist workers with the rest of the suite (scripts/test.sh): each worker has its
own Playwright, its own Chromium and its own servers on free ports in its own temporary dirs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

# The operator console's fixtures (a server with operators ana and ben, visitors, the page).
from tests.e2e.console_support import console, deployment, visitors  # noqa: F401
from tests.e2e.screens import ARTEFACTS

# The website widget's fixtures (a host site on another origin, an admin token, an inbox).
from tests.e2e.widget_support import admin, host_site, widget_inbox  # noqa: F401
from tests.support.servers import ServerProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    # Calls (tests/e2e/test_calls.py): a fake camera and microphone, permission granted, and
    # WebRTC allowed on loopback, the only network these tests may use.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the browser tests `browser` (pyproject.toml), so `-m browser` selects just them."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


# Polling runs every second; leave room for a slow CI machine before an expectation fails: two
# workers share two cores, each with a browser and its servers.
expect.set_options(timeout=20_000)

SignIn = Callable[[str], Page]


class DemoServers:
    """Fresh demo servers for one worker: the next one starts while the current test runs, so a
    test waits for its server only as long as the test before it was shorter than a start-up."""

    def __init__(self, directories: pytest.TempPathFactory) -> None:
        self.directories = directories
        self.next: ServerProcess | None = None

    def launch(self) -> ServerProcess:
        workdir = self.directories.mktemp("demo")
        server = ServerProcess(
            port=free_port(),
            workdir=workdir,
            env={
                "PARLEY_LOG_JSON": "false",
                "PARLEY_DATA_DIR": str(workdir / "var"),
                "PARLEY_DATABASE_URL": "",  # the embedded SQLite, whatever the outer env says
            },
            args=["--demo"],
        )
        return server.launch()

    def take(self) -> ServerProcess:
        server, self.next = self.next or self.launch(), None
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        self.next = self.launch()
        return server

    def close(self) -> None:
        if self.next is not None:
            self.next.stop()


@pytest.fixture(scope="package")
def demo_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServers]:
    servers = DemoServers(tmp_path_factory)
    yield servers
    servers.close()


@pytest.fixture
def demo_server(demo_servers: DemoServers) -> Iterator[ServerProcess]:
    """A fresh demo server (alice, bob, "Demo room", one direct conversation) in its own dir."""
    server = demo_servers.take()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def sign_in(browser: Browser, demo_server: ServerProcess) -> Iterator[SignIn]:
    """Open the demo in a fresh browser context (its own sessionStorage) as `name`."""
    contexts: list[BrowserContext] = []

    def open_as(name: str) -> Page:
        context = browser.new_context(accept_downloads=True, base_url=demo_server.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/")
        page.get_by_role("button", name=name, exact=True).click()
        return page

    yield open_as
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where screenshots go: $PARLEY_E2E_ARTEFACTS or build/e2e-screenshots (screens.py)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    print(f"e2e screenshots: {ARTEFACTS}")
    return ARTEFACTS
