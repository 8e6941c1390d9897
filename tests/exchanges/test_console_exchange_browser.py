"""The console's exchange pages in a real browser (Debian's Chromium, never a
downloaded one): a bank curator follows an exchange from the list to its page, reads
its policy, sync state and its entries' match history, and syncs it; a moderator reads
the same on a phone-sized screen without sideways scrolling, and has no sync button."""

from __future__ import annotations

from typing import Any

import pytest

from takedown.console_demo import PASSWORD
from takedown.runtime import Runtime
from tests.console.test_console_browser import _no_horizontal_scroll, _sign_in
from tests.exchanges.test_console_exchange import seed_exchange
from tests.exchanges.test_pull import stopncii  # noqa: F401
from tests.web.conftest import browser, live_url  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_exchange_pages_in_chromium(
    browser: Any,  # noqa: F811
    live_url: str,  # noqa: F811
    rt: Runtime,
    client: Any,
    auth: dict[str, str],
    tmp_path: Any,
    stopncii: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    ids = seed_exchange(rt, client, auth, tmp_path, stopncii)
    rt.users.create("curator", PASSWORD, "child_safety_specialist", actor="test")
    rt.users.create("moder", PASSWORD, "moderator", actor="test")
    problems: list[str] = []

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        _sign_in(page, live_url, "curator")
        page.goto(f"{live_url}/console/exchanges")
        expect(page.locator("h1")).to_have_text("Hash exchanges")
        row = page.locator("tr", has_text="stopncii")
        expect(row).to_contain_text("PDQ ≤ 8")
        expect(row).to_contain_text("review")
        page.click("a[href='/console/exchanges/stopncii']")
        expect(page.locator("h1")).to_have_text("Exchange stopncii")
        expect(page.locator("#policy-threshold")).to_contain_text("≤ 8 bits")
        expect(page.locator("#policy-action")).to_contain_text("never blocks or restricts")
        expect(page.locator("#policy-negative")).to_contain_text("benign (1 entries)")
        expect(page.locator("#policy-flood")).to_contain_text("3 distinct uploads")
        expect(page.locator("#sync-entries")).to_contain_text("3 live · 3 added")
        expect(page.locator("#sync-error")).to_have_text("none")
        history = page.locator("table.history tbody tr")
        expect(history).to_have_count(2)
        flooded = page.locator("table.history tr", has_text=ids["flooded"])
        expect(flooded).to_contain_text("flood restored")
        cells = flooded.locator("td")
        expect(cells.nth(3)).to_have_text("4")  # matches
        expect(cells.nth(6)).to_have_text("1")  # confirmed
        expect(cells.nth(7)).to_have_text("0")  # rejected
        page.click("text=Sync stopncii now")
        expect(page.locator(".notice")).to_contain_text("stopncii: 1 page(s), 0 added")
    finally:
        context.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = phone.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        _sign_in(page, live_url, "moder")
        page.goto(f"{live_url}/console/exchanges/stopncii")
        expect(page.locator("h1")).to_have_text("Exchange stopncii")
        expect(page.locator("table.history tbody tr")).to_have_count(2)
        assert page.locator("text=Sync stopncii now").count() == 0
        assert _no_horizontal_scroll(page)
    finally:
        phone.close()
    assert problems == []
