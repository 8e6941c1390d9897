"""Screenshots of the review console's main pages, for the README and docs/console.md.

Runs the real app on a throw-away SQLite database filled with stand-in data
(``takedown.console_demo``: benign photos from scikit-image standing in for reported
material) and drives Debian's Chromium with Playwright. Usage: scripts/screenshots
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import Page, sync_playwright

from takedown.api.app import create_app
from takedown.config import Settings
from takedown.console_demo import PASSWORD, seed_console_demo
from takedown.runtime import open_runtime

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def _serve(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def _sign_in(page: Page, base: str, user: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/console/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def _shot(page: Page, name: str, *, full: bool = False) -> None:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"wrote {path.relative_to(OUT.parents[1])}")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rt = open_runtime(Settings(data_dir=Path(tmp)))
        cases = seed_console_demo(rt)
        base, server, thread = _serve(create_app(rt))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport=WIDE)
                _sign_in(page, base, "mod")
                _shot(page, "queue")
                page.goto(f"{base}/console/cases/{cases.minor_case}")
                page.click("#claim")
                page.wait_for_load_state()
                _shot(page, "case-blurred")
                page.click("button.reveal")
                page.wait_for_function("document.querySelector('img.media.full')?.naturalWidth > 0")
                page.locator("figure.media-card").first.scroll_into_view_if_needed()
                _shot(page, "case-revealed")
                page.locator("#decision-form").scroll_into_view_if_needed()
                _shot(page, "case-decision")
                page.goto(f"{base}/console/settings")
                _shot(page, "settings")
                _sign_in(page, base, "legal")
                page.goto(f"{base}/console/cases/{cases.minor_case}#reports-h")
                _shot(page, "case-legal-identity")
                _sign_in(page, base, "admin")
                page.goto(f"{base}/console/dashboard?days=30")
                _shot(page, "dashboard")
                page.goto(f"{base}/console/admin/users")
                _shot(page, "admin-users")
                page.set_viewport_size(NARROW)
                _sign_in(page, base, "spec")
                page.goto(f"{base}/console/queue?team=moderation")
                _shot(page, "queue-narrow")
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
