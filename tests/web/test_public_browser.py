"""The public form in a real browser, with JavaScript off and only a keyboard.

Why a real browser: the promise is that a frightened teenager on an old phone, or
someone who cannot use a mouse, can report and follow a report. Only a browser shows
that the tab order, the radio groups, the focus ring and the narrow layout really work.

The browser is Debian's Chromium at /usr/bin/chromium (``scripts/install`` installs it
when run as root); Playwright never downloads one. Without it the tests are skipped with
the reason, unless TAKEDOWN_REQUIRE_BROWSER=1 (as in CI), where they fail.
Everything here is made up: example addresses, invented ids and text.
"""

from __future__ import annotations

from typing import Any

from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput

POST_URL = "https://social.example/p/clip-7"


def test_report_and_follow_it_with_keyboard_only_and_no_javascript(
    browser: Any, live_url: str, rt: Runtime
) -> None:
    from playwright.sync_api import expect

    # The platform has told Takedown about the post, so the report can restrict it.
    rt.registry.upsert_item(ItemInput("clip-7", account_id="acct-7", url=POST_URL), actor="test")
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    page = context.new_page()
    keys = page.keyboard
    page.goto(f"{live_url}/report")
    assert page.locator("html").get_attribute("lang") == "en"

    # 1. What is the content: focus the first choice and select it with Space.
    page.focus("#category-csam")
    keys.press("Space")
    expect(page.locator("#category-csam")).to_be_checked()
    # 2. Who are you: Tab enters the group; the arrow key moves and selects.
    keys.press("Tab")
    expect(page.locator("#reporter_role-person_depicted")).to_be_focused()
    keys.press("ArrowDown")
    expect(page.locator("#reporter_role-parent_guardian")).to_be_focused()
    expect(page.locator("#reporter_role-parent_guardian")).to_be_checked()
    # 3. Where: the URL; item numbers stay empty.
    keys.press("Tab")
    urls = page.locator("#urls")
    expect(urls).to_be_focused()
    # The keyboard focus is visible (a 3 px ring, not the browser's faint default).
    assert urls.evaluate("e => getComputedStyle(e).outlineWidth") == "3px"
    keys.type(POST_URL)
    keys.press("Tab")
    expect(page.locator("#item_ids")).to_be_focused()
    # 4. What is wrong.
    keys.press("Tab")
    expect(page.locator("#explanation")).to_be_focused()
    keys.type("A video of my daughter at 14, shared by people who blackmailed her.")
    # 5. Contact: name and email are optional for a report about a child; a phone
    # number is the contact a removal request needs.
    for field in ("#reporter_name", "#reporter_email", "#contact"):
        keys.press("Tab")
        expect(page.locator(field)).to_be_focused()
    keys.type("+1 555 0100")
    # 6. The removal request: signature and the two statements.
    keys.press("Tab")
    expect(page.locator("#signature")).to_be_focused()
    keys.type("Pat Example")
    for box in ("#not_consensual", "#authorised_for_depicted"):
        keys.press("Tab")
        expect(page.locator(box)).to_be_focused()
        keys.press("Space")
        expect(page.locator(box)).to_be_checked()
    # 7. Sharing the person's details with NCMEC: optional, left empty (no consent).
    for field in (
        "#victim_consent",
        "#victim_first_name",
        "#victim_last_name",
        "#victim_age",
        "#victim_date_of_birth",
        "#victim_email",
        "#victim_phone",
    ):
        keys.press("Tab")
        expect(page.locator(field)).to_be_focused()
    # 8. Declaration, then the button.
    keys.press("Tab")
    expect(page.locator("#good_faith")).to_be_focused()
    keys.press("Space")
    keys.press("Tab")
    expect(page.locator("button[type=submit]")).to_be_focused()
    with page.expect_navigation():
        keys.press("Enter")

    # The receipt: case number and token, once.
    assert page.locator("h1").inner_text() == "We have received your report"
    case_number = (page.locator("#case-number").text_content() or "").strip()
    token = (page.locator("#status-token").text_content() or "").strip()
    assert case_number and len(token) >= 24
    expect(page.locator("body")).to_contain_text("complete removal request")
    expect(page.locator("body")).to_contain_text("only time we show the status token")

    # Follow it: the link, then the form, all by keyboard.
    page.focus("a.button[href='/status']")
    with page.expect_navigation():
        keys.press("Enter")
    page.focus("#case_number")
    keys.type(case_number)
    keys.press("Tab")
    expect(page.locator("#token")).to_be_focused()
    keys.type(token)
    with page.expect_navigation():
        keys.press("Enter")  # Enter in a text field submits the form
    status_text = page.locator("#status-text").inner_text()
    assert "restricted" in status_text
    expect(page.locator("#content-restricted")).to_contain_text("Yes")
    context.close()


def _horizontal_overflow(page: Any) -> int:
    overflow: int = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return overflow


def test_narrow_screen_has_no_horizontal_scroll(browser: Any, live_url: str) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 700})
    page = context.new_page()
    page.goto(f"{live_url}/report")
    assert _horizontal_overflow(page) <= 0, "the form scrolls sideways at 375 px"
    # The re-rendered form with its error summary, and the receipt with its long token.
    page.focus("button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator(".error-summary").is_visible()
    assert _horizontal_overflow(page) <= 0, "the error page scrolls sideways at 375 px"
    page.focus("#category-csam")
    page.keyboard.press("Space")
    page.focus("#reporter_role-user")
    page.keyboard.press("Space")
    page.focus("#urls")
    page.keyboard.type("https://social.example/p/" + "very-long-path-segment-" * 8)
    page.focus("#explanation")
    page.keyboard.type("A sexual video of a teenager.")
    page.focus("#good_faith")
    page.keyboard.press("Space")
    page.focus("button[type=submit]")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#status-token").is_visible()
    assert _horizontal_overflow(page) <= 0, "the receipt scrolls sideways at 375 px"
    case_number = page.locator("#case-number").text_content() or ""
    token = page.locator("#status-token").text_content() or ""
    page.goto(f"{live_url}/status")
    page.focus("#case_number")
    page.keyboard.type(case_number.strip())
    page.focus("#token")
    page.keyboard.type(token.strip())
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#status-text").is_visible()
    assert _horizontal_overflow(page) <= 0, "the status page scrolls sideways at 375 px"
    context.close()
