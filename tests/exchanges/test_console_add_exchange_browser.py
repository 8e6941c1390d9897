"""Adding an exchange in the console in a real browser (Debian's Chromium, never a
downloaded one): a bank curator fills the form on the exchanges page, is told in a
sentence why a base URL of another host is refused (the form kept), corrects it, sees
the exchange listed and syncs it; on a phone-sized screen the form fits without
sideways scrolling."""

from __future__ import annotations

import time
from typing import Any

import pytest

from takedown.console_demo import PASSWORD
from takedown.runtime import Runtime
from tests.console.test_console_browser import _no_horizontal_scroll, _sign_in
from tests.exchanges.ncmec_hash_server import PASSWORD as NCMEC_PASSWORD
from tests.exchanges.ncmec_hash_server import USER
from tests.exchanges.test_pull import md5, ncmec  # noqa: F401
from tests.web.conftest import browser, live_url  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_adding_an_exchange_in_chromium(
    browser: Any,  # noqa: F811
    live_url: str,  # noqa: F811
    rt: Runtime,
    tmp_path: Any,
    ncmec: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    ncmec.add(7, "e1", {"md5": md5(1)}, int(time.time()) - 3600)
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    (tmp_path / "ncmec-creds").write_text(f"{USER}:{NCMEC_PASSWORD}\n")
    rt.users.create("curator", PASSWORD, "child_safety_specialist", actor="test")
    problems: list[str] = []

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        _sign_in(page, live_url, "curator")
        page.goto(f"{live_url}/console/exchanges")
        expect(page.locator("h2#new-exchange-h")).to_have_text("Add an exchange")
        page.fill("#ex-name", "ncmec")
        page.select_option("#ex-type", "ncmec")
        page.select_option("#ex-bank", "csam")
        page.fill("#ex-cred-file", "ncmec-creds")
        page.fill("#ex-url", "https://attacker.example")
        page.select_option("#ex-action", "review")
        page.click("text=Add exchange")
        expect(page.locator("#exchange-error")).to_contain_text(
            "base URL must be one of ncmec's own"
        )
        expect(page.locator("#ex-name")).to_have_value("ncmec")  # the form is kept
        expect(page.locator("#ex-action")).to_have_value("review")
        page.fill("#ex-url", ncmec.url)
        page.click("text=Add exchange")
        expect(page.locator(".notice")).to_contain_text("Exchange ncmec added")
        row = page.locator("tr", has_text="ncmec")
        expect(row).to_contain_text("csam")
        expect(row).to_contain_text("review")
        assert NCMEC_PASSWORD not in page.content()
        page.click("text=Sync ncmec now")
        expect(page.locator(".notice")).to_contain_text("ncmec: 1 page(s), 1 added")
    finally:
        context.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = phone.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        _sign_in(page, live_url, "curator")
        page.goto(f"{live_url}/console/exchanges")
        expect(page.locator("#ex-name")).to_be_visible()
        assert _no_horizontal_scroll(page)
    finally:
        phone.close()
    assert problems == []
