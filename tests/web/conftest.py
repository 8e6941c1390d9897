"""Fixtures for the real-browser tests: Debian's Chromium and the app on a real port.

The browser is /usr/bin/chromium (``scripts/install`` installs it when run as root);
Playwright never downloads one. Without it the tests are skipped with the reason, unless
TAKEDOWN_REQUIRE_BROWSER=1 (as in CI), where they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from takedown.api.app import create_app
from takedown.runtime import Runtime
from takedown.web import ratelimit

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("TAKEDOWN_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Playwright waits 5 s for an expect() and 30 s for an action or a navigation by default:
# too little for Chromium and the app (a thread of this very process) on a loaded CI
# machine. A passing check returns as soon as it holds, so a long deadline costs nothing.
BROWSER_TIMEOUT_MS = 120_000


def browser_unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (TAKEDOWN_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _generous(target: Any) -> Any:
    """A context or a page waiting ``BROWSER_TIMEOUT_MS`` by default."""
    target.set_default_timeout(BROWSER_TIMEOUT_MS)
    target.set_default_navigation_timeout(BROWSER_TIMEOUT_MS)
    return target


class _GenerousBrowser:
    """The launched browser, its contexts waiting ``BROWSER_TIMEOUT_MS`` for actions,
    navigations and ``wait_for_*`` (explicit timeouts in a test still apply)."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def new_context(self, **kwargs: Any) -> Any:
        return _generous(self._browser.new_context(**kwargs))

    def new_page(self, **kwargs: Any) -> Any:
        return _generous(self._browser.new_page(**kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (starting it is the slow part), with
    generous default timeouts for expect() and for the pages' actions."""
    if not CHROMIUM.exists():
        browser_unavailable(
            f"{CHROMIUM} is missing; run scripts/install as root or apt-get install chromium"
        )
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        browser_unavailable("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        expect.set_options(timeout=BROWSER_TIMEOUT_MS)
        yield _GenerousBrowser(chromium)
        chromium.close()


@pytest.fixture
def live_url(rt: Runtime) -> Iterator[str]:
    """The real app served by uvicorn in a background thread, on a free port."""
    ratelimit.reset()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks the port; no race with another test
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt), log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=60)
    sock.close()
    ratelimit.reset()
