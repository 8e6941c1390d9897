"""Adding an exchange in the console (issue 19, item 1: "the same in the API and the
console"), over plain HTTP on both backends: the form only for the roles that may add
one (banks:write), CSRF like every console form, mistakes re-shown as sentences with
the form kept, the API's confinement of credentials and base URLs, the secret never
shown; the exchange added syncs. The same form in Chromium:
test_console_add_exchange_browser.py."""

from __future__ import annotations

import html
import time
from pathlib import Path

from sqlalchemy import select

from takedown.store.models import AuditEvent
from tests.console.helpers import sign_in
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.test_pull import md5, ncmec  # noqa: F401


def form(csrf: str, **fields: str) -> dict[str, str]:
    base = {"csrf": csrf, "name": "ncmec", "type": "ncmec", "bank": "csam",
            "credentials_file": "ncmec-creds", "credentials_env": "", "base_url": "",
            "privacy_group": "", "interval_seconds": "3600", "threshold": "",
            "action": ""}  # fmt: skip
    return {**base, **fields}


def test_adding_an_exchange_in_the_console(rt, client, tmp_path: Path, ncmec):  # noqa: F811
    ncmec.add(7, "e1", {"md5": md5(1)}, int(time.time()) - 3600)
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    (tmp_path / "ncmec-creds").write_text(f"{USER}:{PASSWORD}\n")  # in the credentials dir

    # A moderator reads the exchanges but may not add one: no form, and a 403.
    csrf = sign_in(client, "mod")
    page = client.get("/console/exchanges")
    assert page.status_code == 200 and "Add an exchange" not in page.text
    refused = client.post("/console/exchanges", data=form(csrf, base_url=ncmec.url))
    assert refused.status_code == 403 and "forbidden" in refused.text

    csrf = sign_in(client, "spec")  # a bank curator
    page = client.get("/console/exchanges")
    assert "Add an exchange" in page.text and '<option value="csam"' in page.text
    # No CSRF token: refused, nothing added.
    bad = client.post("/console/exchanges", data=form("wrong", base_url=ncmec.url))
    assert bad.status_code == 403 and rt.exchanges.list() == []

    # The API's confinement, shown as sentences on the page, the form kept.
    cases = [
        ({"credentials_file": "/etc/passwd"}, "credentials file must be in"),
        ({"credentials_file": "", "credentials_env": "TAKEDOWN_DATABASE_URL"},
         "variable must be named TAKEDOWN_EXCHANGE_CREDENTIALS_"),
        ({"base_url": "https://attacker.example"}, "base URL must be one of ncmec's own"),
        ({"base_url": ncmec.url, "threshold": "eight"}, "PDQ threshold must be a whole number"),
        ({"base_url": ncmec.url, "type": "gopher"}, "gopher"),
        ({"base_url": ncmec.url, "bank": "nope"}, "nope"),
        ({"base_url": ncmec.url, "type": "threatexchange"}, "privacy group"),
        ({"base_url": ncmec.url, "credentials_file": "missing"}, "cannot be read"),
    ]  # fmt: skip
    r = client.post(
        "/console/exchanges", data=form(csrf, base_url=ncmec.url, interval_seconds="1h")
    )
    assert r.status_code == 422 and 'data-code="invalid_number"' in r.text
    for fields, sentence in cases:
        r = client.post("/console/exchanges", data=form(csrf, **fields))
        assert 400 <= r.status_code < 500, (fields, r.status_code)
        text = html.unescape(r.text)
        assert 'role="alert"' in r.text and sentence in text, (fields, text[-2500:])
        assert 'value="ncmec"' in r.text  # the form is kept
    assert rt.exchanges.list() == []

    # Right: added, said on the page; the secret is nowhere; it syncs.
    done = client.post(
        "/console/exchanges",
        data=form(csrf, base_url=ncmec.url, threshold="12", action="review"),
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    listing = client.get(done.headers["location"])
    assert "Exchange ncmec added" in listing.text and PASSWORD not in listing.text
    (view,) = rt.exchanges.list()
    assert (view.name, view.type, view.bank, view.threshold, view.action) == (
        "ncmec", "ncmec", "csam", 12, "review")  # fmt: skip
    with rt.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "exchange.added")).one()
    assert event.actor.startswith("user:") and PASSWORD not in event.details
    again = client.post("/console/exchanges", data=form(csrf, base_url=ncmec.url))
    assert again.status_code == 409 and "already exists" in html.unescape(again.text)
    synced = client.post("/console/exchanges/ncmec/sync", data={"csrf": csrf})
    assert synced.status_code == 200 and "ncmec: 1 page(s), 1 added" in synced.text
