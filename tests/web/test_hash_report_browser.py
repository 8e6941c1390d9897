"""Report without uploading, in a real browser: the image is hashed on the device.

The proof the issue asks for: Chromium submits a report with a picked file while every
network request is recorded. No request carries the file's bytes (the only request with
a body is the form post, and it holds the hashes); the report arrives with the hashes
the server computes for the same file; the registered copy of the image is restricted;
the reporter can then withdraw the report from the status page.

The picked image is a stand-in photo from the scikit-image wheel, never real material.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from takedown.media import hash_image_bytes
from takedown.runtime import Runtime
from takedown.services.registry.service import ItemInput
from tests.conftest import standin_bytes


def test_the_image_never_leaves_the_device(
    browser: Any, live_url: str, rt: Runtime, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    photo = standin_bytes("astronaut.png")  # a stand-in photo
    picked = tmp_path / "holiday-photo.png"
    picked.write_bytes(photo)
    expected = hash_image_bytes(photo)
    # The platform registered a post carrying the same picture.
    rt.registry.upsert_item(
        ItemInput("post-1", account_id="acct-1", url="https://social.example/p/1"), actor="t"
    )
    rt.registry.attach_media("post-1", rt.registry.media_from_bytes(photo), actor="t")

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    requests: list[Any] = []
    context.on("request", lambda r: requests.append(r))  # the page's and the worker's
    page = context.new_page()
    page.goto(f"{live_url}/report")

    page.check("#category-csam")
    page.check("#reporter_role-person_depicted")
    page.set_input_files("#hash-file", str(picked))
    entry = page.locator(".hash-entry")
    expect(entry).to_have_count(1)
    # The page shows exactly the hashes it will send: the server's, to the bit (PNG).
    expect(entry.locator(".hash-md5")).to_have_text(expected.md5)
    expect(entry.locator(".hash-pdq")).to_have_text(expected.pdq.hash)
    expect(page.locator("#hash-status")).to_contain_text("It was not sent")
    assert page.locator("#hash-file").evaluate("e => e.files.length") == 0  # forgotten
    # connect-src 'none': no script on the page can send anything itself.
    probe = "fetch('/report', {method: 'POST', body: 'x'}).then(() => 'sent', () => 'blocked')"
    assert page.evaluate(probe) == "blocked"
    page.fill("#explanation", "A picture of me at 15 that I never agreed to share.")
    page.check("#good_faith")
    page.click("button[type=submit]")
    expect(page.locator("#case-number")).to_be_visible()
    expect(page.locator("#hashes-received")).to_contain_text("hashes of 1 image")

    # Every request: only body-less GETs, except the one form post.
    with_body = [r for r in requests if r.post_data_buffer]
    assert [(r.method, r.url) for r in with_body] == [("POST", f"{live_url}/report")]
    assert all(r.method == "GET" for r in requests if r not in with_body)
    assert any(r.url.endswith("/assets/js/hash-worker.js") for r in requests)
    sent = with_body[0].post_data_buffer
    assert len(sent) < 4096 < len(photo)
    middle = photo[len(photo) // 2 : len(photo) // 2 + 48]
    for form in (middle, base64.b64encode(middle)[:40], middle.hex().encode()):
        assert form not in sent  # not raw, not base64, not hex
    fields = parse_qs(sent.decode())
    assert "holiday-photo" not in sent.decode()  # not even the file's name
    (hashes,) = [json.loads(v) for v in fields["hashes"]]
    assert hashes["md5"] == expected.md5 and hashes["pdq"] == expected.pdq.hash
    assert hashes["dihedral"] == [h for _, h in expected.pdq.dihedral]

    # The registered copy was restricted, as for any minor-safety report.
    assert rt.registry.get_item("post-1").visibility == "restricted"

    # The same case number and token work on the status page; the reporter withdraws.
    case_number = page.locator("#case-number").inner_text()
    token = page.locator("#status-token").inner_text()
    page.goto(f"{live_url}/status")
    page.fill("#case_number", case_number)
    page.fill("#token", token)
    page.click("button[type=submit]")
    expect(page.locator("#hashed-files")).to_contain_text("hashes of 1 image")
    page.click("text=Withdraw my report")
    expect(page.locator("#withdrawn")).to_contain_text("You withdrew this report")
    context.close()
