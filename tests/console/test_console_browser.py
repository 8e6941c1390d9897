"""The review console in a real browser (Debian's Chromium, never a downloaded one).

One flow, the one the console exists for: a moderator signs in, finds the parent's
report at the top of the queue, claims it with the keyboard, sees the media blurred
until they reveal it, finds that no violation is shown, and the case waits for a
specialist, who takes the second review on a phone-sized screen. Along the way: a form
sent without its CSRF token is refused, the reporter's identity stays hidden from the
moderator, and a script in the report's text does not run. All pictures are benign
stand-ins from scikit-image.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from takedown.console_demo import PASSWORD, DemoCases
from takedown.runtime import Runtime
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, Case
from tests.web.conftest import browser, live_url  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _media_views(rt: Runtime) -> list[bool]:
    with unit_of_work(rt.sessions, write=False) as s:
        rows = s.scalars(
            select(AuditEvent.details)
            .where(AuditEvent.action == "media.viewed")
            .order_by(AuditEvent.id)
        )
        return [json.loads(d)["full"] for d in rows]


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def _no_horizontal_scroll(page: Any) -> bool:
    page.wait_for_load_state("load")  # measured with the stylesheet applied
    wide = page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth + 1 ? [] :
        [...document.querySelectorAll('main *, header *')]
          .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                       && !e.closest('.scroll'))
          .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 60))"""
    )
    assert wide == [], wide
    return True


def test_a_case_worked_end_to_end_by_moderator_and_specialist(
    browser: Any,  # noqa: F811
    live_url: str,  # noqa: F811
    rt: Runtime,
    demo: DemoCases,
) -> None:
    rt.users.create("mod", PASSWORD, "moderator", actor="test")
    rt.users.create("spec", PASSWORD, "child_safety_specialist", actor="test")
    case = demo.minor_case
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        _work_the_case(context, live_url, rt, case)
    finally:
        context.close()  # no open connection keeps the server from stopping


def _work_the_case(context: Any, base: str, rt: Runtime, case: str) -> None:
    from playwright.sync_api import expect

    page = context.new_page()
    problems: list[str] = []
    # Failed loads are expected (the refused CSRF post, the favicon); not script errors.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    _sign_in(page, base, "mod")
    expect(page.locator("h1")).to_have_text("Moderation queue")
    page.wait_for_load_state("load")  # the shortcuts' script has run
    first = page.locator("table.queue tbody tr").first
    expect(first).to_contain_text(case)
    page.keyboard.press("j")  # keyboard: select the first row, Enter opens it
    expect(page.locator("a.case-link").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text(case)

    # A script in the report's text shows as text and does not run.
    expect(page.locator(".report-text").first).to_contain_text("<script>document.title")
    assert page.title() != "pwned"
    # The moderator does not see who reported.
    assert "Pat Parent" not in page.content() and "pat.parent@" not in page.content()

    # Blur by default: the picture on screen is the server's blurred, greyscale preview.
    preview = page.locator("img.media.blurred")
    expect(preview).to_be_visible()
    page.wait_for_function("document.querySelector('img.media.blurred').naturalWidth > 0")
    assert page.locator("img.media.full").count() == 0
    assert _media_views(rt) == [False]

    # A form sent without its CSRF token is refused, and changes nothing.
    page.evaluate("document.querySelector('form[action$=\"/claim\"] input[name=csrf]').remove()")
    page.click("#claim")
    expect(page.locator("h1")).to_contain_text("CSRF")
    expect(page.locator(".code")).to_contain_text("csrf_failed")
    assert rt.review.lock_of(case) is None

    # Claim with the keyboard.
    page.goto(f"{base}/console/cases/{case}")
    page.keyboard.press("c")
    expect(page.locator(".notice")).to_contain_text("You hold this case")
    assert rt.review.lock_of(case).username == "mod"

    # Reveal the one item: the sharp file is fetched, and the view is logged as full.
    page.click("button.reveal")
    full = page.locator("img.media.full")
    expect(full).to_be_visible()
    page.wait_for_function("document.querySelector('img.media.full').naturalWidth > 0")
    expect(page.locator("img.media.blurred")).to_be_hidden()
    assert _media_views(rt)[-1] is True
    page.keyboard.press("h")  # and blur it again
    expect(page.locator("img.media.full")).to_have_count(0)
    expect(page.locator("img.media.blurred")).to_be_visible()

    # Decide "no violation" with the keyboard: the minor-safety rule sends it to a
    # specialist instead of dismissing it.
    page.keyboard.press("2")
    expect(page.locator("#outcome-no_violation")).to_be_checked()
    page.keyboard.press("d")
    expect(page.locator("#reasons")).to_be_focused()
    page.keyboard.type("The stand-in shows a cat; nothing here breaks the rules.")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".notice")).to_contain_text("Decision recorded")
    expect(page.locator(".second-review")).to_contain_text("Awaiting second review")
    assert _state(rt, case) == "awaiting_second_review"
    page.click("text=Sign out")
    expect(page.locator("h1")).to_contain_text("Sign in")

    # The specialist, on a phone-sized screen.
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, base, "spec")
    expect(page.locator("h1")).to_have_text("Specialists' queue")
    assert _no_horizontal_scroll(page)
    page.click(f"text={case}")
    assert _no_horizontal_scroll(page)
    page.click("#claim")
    expect(page.locator(".notice")).to_contain_text("You hold this case")
    page.check("#outcome-violation")
    page.fill("#policy", "csam")
    page.fill("#reasons", "Second review: this is the reported material; remove every copy.")
    page.click("#decision-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("Decision recorded")
    assert _state(rt, case) == "decided"
    assert problems == []  # no script error, no CSP violation


def _state(rt: Runtime, case_id: str) -> str:
    with unit_of_work(rt.sessions, write=False) as s:
        return s.scalars(select(Case.state).where(Case.public_id == case_id)).one()
