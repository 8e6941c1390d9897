"""The legal team's Hash shares page in a real browser (Debian's Chromium): a share NCMEC
could not take back is listed first under "Needs you", with its upstream id; the legal
user marks it withdrawn once NCMEC removed it, on a phone-sized screen without sideways
scrolling."""

from __future__ import annotations

from typing import Any

import pytest

from takedown.console_demo import PASSWORD
from takedown.runtime import Runtime
from tests.cases.helpers import user_headers
from tests.console.test_console_browser import _no_horizontal_scroll, _sign_in
from tests.exchanges.test_pull import md5, ncmec  # noqa: F401
from tests.exchanges.test_share_followups import _entry, _ncmec_sharing, settings  # noqa: F401
from tests.exchanges.test_sharing import OWN, confirm
from tests.web.conftest import browser, live_url  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_marking_a_failed_withdrawal_done_in_chromium(
    browser: Any,  # noqa: F811
    live_url: str,  # noqa: F811
    rt: Runtime,
    client: Any,
    auth: dict[str, str],
    tmp_path: Any,
    ncmec: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    _ncmec_sharing(rt, tmp_path, ncmec)
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    assert rt.shares.send_due() == 1
    off = {"enabled": False, "reason": "A false positive."}
    assert client.patch(f"/v1/entries/{_entry(rt, md5(2))}", headers=auth, json=off).is_success
    rt.shares.withdraw_due()
    upstream = rt.shares.get(share.id).upstream_id
    assert upstream
    rt.users.create("legal-browser", PASSWORD, "legal", actor="test")
    problems: list[str] = []

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = phone.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        _sign_in(page, live_url, "legal-browser")
        page.goto(f"{live_url}/console/legal/shares")
        expect(page.locator("#withdraw-failed")).to_contain_text("Needs you")
        expect(page.locator("[role=alert]")).to_contain_text("1 shared file(s)")
        row = page.locator("#withdraw-failed + p + div tr", has_text=upstream)
        expect(row).to_contain_text("A false positive.")
        assert _no_horizontal_scroll(page)
        page.fill(f"#how-{share.id}", "NCMEC confirmed the removal by mail.")
        page.click(f"text=Mark {share.id} withdrawn")
        expect(page.locator(".notice")).to_contain_text("marked withdrawn")
        assert page.locator("#withdraw-failed").count() == 0
    finally:
        phone.close()
    assert rt.shares.get(share.id).state == "withdrawn"
    assert problems == []
