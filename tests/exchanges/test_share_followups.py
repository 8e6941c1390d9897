"""What follows a share taken back, through the HTTP API and the console against the
local exchange-protocol servers, on both database backends: a share NCMEC cannot give
back (``withdraw_failed``) alerts the legal team (a mail, the console's "Needs you"
list) and is marked withdrawn by hand once NCMEC removed it; a share cancelled or
withdrawn is offered to the legal team again when its file's entry is enabled again
(not when the decision that confirmed it was overturned); a flood-quarantined entry a
specialist leaves disabled takes its shares back."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from takedown.config import Settings
from takedown.store.models import BankEntry, MailMessage
from tests.cases.helpers import user_headers
from tests.console.helpers import sign_in
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq  # noqa: F401
from tests.exchanges.test_share_withdrawal import overturn
from tests.exchanges.test_sharing import OWN, audit, confirm

LEGAL = "legal-alerts@example.org"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        exchange_credentials_dir=tmp_path,
        exchange_base_urls="http://127.0.0.1",
        legal_alert_email=LEGAL,
        flood_quarantine_uploads=3,
        specialist_alert_email="cs@example.org",
    )


def _ncmec_sharing(rt, tmp_path, ncmec) -> None:  # noqa: F811
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    rt.exchanges.add("ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
                     credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"))  # fmt: skip


def _entry(rt, value: str) -> str:
    with rt.sessions() as s:
        return s.scalars(select(BankEntry.public_id).where(BankEntry.value == value)).one()


def _csrf(page: str) -> str:
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_a_withdrawal_ncmec_cannot_do_alerts_legal_and_is_marked_by_hand(
    rt,
    client,
    auth,
    tmp_path,
    ncmec,  # noqa: F811
):
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    _ncmec_sharing(rt, tmp_path, ncmec)
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    assert rt.shares.send_due() == 1
    sent = rt.shares.get(share.id)
    # Only a share whose withdrawal failed is marked withdrawn by hand.
    body = {"note": "NCMEC removed it."}
    r = client.post(f"/v1/exchange-shares/{share.id}/withdrawn", headers=legal, json=body)
    assert r.status_code == 409 and r.json()["code"] == "share_not_withdraw_failed", r.text

    off = {"enabled": False, "reason": "A false positive: a cup of coffee."}
    assert client.patch(f"/v1/entries/{_entry(rt, md5(2))}", headers=auth, json=off).is_success
    assert rt.shares.withdraw_due() == 0
    assert rt.shares.get(share.id).state == "withdraw_failed"

    # The legal team is mailed: which share, which upstream entry, what to do; and
    # never the exchange's password.
    with rt.sessions() as s:
        (mail,) = s.scalars(select(MailMessage).where(MailMessage.to_address == LEGAL))
    assert share.id in mail.subject and "could not be withdrawn" in mail.subject
    assert sent.upstream_id and sent.upstream_id in mail.body
    assert "Ask ncmec to remove the entry" in mail.body and "cup of coffee" in mail.body
    assert PASSWORD not in mail.body + mail.subject
    assert rt.shares.withdraw_due() == 0  # alerted once
    with rt.sessions() as s:
        assert len(list(s.scalars(select(MailMessage.id)))) == 1

    # The console's Hash shares page puts it first, with a form to mark it removed.
    sign_in(client, "legal")
    page = client.get("/console/legal/shares").text
    text = html.unescape(page)
    assert "Needs you: shares the exchange still holds" in text
    assert sent.upstream_id in text and f"Mark {share.id} withdrawn" in text
    r = client.post(f"/v1/exchange-shares/{share.id}/withdrawn", headers=legal, json={"note": " "})
    assert r.status_code == 422 and r.json()["code"] == "note_required", r.text
    r = client.post(
        f"/console/legal/shares/{share.id}/withdrawn",
        data={"csrf": _csrf(page), "note": "NCMEC confirmed the removal by mail."},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "marked withdrawn" in html.unescape(r.text)
    done = rt.shares.get(share.id)
    assert done.state == "withdrawn" and done.withdrawn_at is not None
    assert "Needs you" not in html.unescape(client.get("/console/legal/shares").text)
    (event,) = audit(rt, "exchange.share_withdrawn")
    details = json.loads(event.details)
    assert event.actor != "worker" and details["by_hand"] is True
    assert "confirmed the removal" in details["note"]

    # The entry was no false positive after all: enabled again, the file is offered to
    # the legal team again (pending), and sent again once approved.
    on = {"enabled": True}
    assert client.patch(f"/v1/entries/{_entry(rt, md5(2))}", headers=auth, json=on).is_success
    again = client.get(f"/v1/exchange-shares/{share.id}", headers=legal).json()
    assert again["state"] == "pending" and again["upstream_id"] is None
    assert again["decided_by"] is None and again["withdrawn_at"] is None
    assert again["signals"] == sent.signals
    (event,) = audit(rt, "exchange.share_reoffered")
    assert json.loads(event.details)["before"]["state"] == "withdrawn"
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    assert rt.shares.send_due() == 1 and rt.shares.get(share.id).state == "sent"


def test_a_cancelled_share_is_offered_again_when_its_entry_is_enabled(
    rt,
    client,
    auth,
    tmp_path,
    ncmec,  # noqa: F811
):
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    _ncmec_sharing(rt, tmp_path, ncmec)
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    overturned_case = confirm(rt, client, 3, spec)
    first, second = rt.shares.list(state="pending")
    assert first.signals["md5"] == md5(2) and second.signals["md5"] == md5(3)

    # Disabled (pending: cancelled), then enabled again: pending once more.
    off = {"enabled": False, "reason": "Looks like a false positive."}
    entry = _entry(rt, pdq(2))
    assert client.patch(f"/v1/entries/{entry}", headers=auth, json=off).is_success
    assert rt.shares.get(first.id).state == "cancelled"
    assert client.patch(f"/v1/entries/{entry}", headers=auth, json={"enabled": True}).is_success
    back = rt.shares.get(first.id)
    assert back.state == "pending" and back.withdraw_reason is None and back.case_id
    assert [json.loads(e.details)["before"]["state"] for e in audit(
        rt, "exchange.share_reoffered")] == ["cancelled"]  # fmt: skip

    # The decision that confirmed the third file is overturned on appeal: enabling its
    # entry by hand does not offer it again (nothing confirms it any more).
    overturn(rt, client, overturned_case)
    assert rt.shares.get(second.id).state == "cancelled"
    entry3 = _entry(rt, md5(3))
    assert client.patch(f"/v1/entries/{entry3}", headers=auth, json={"enabled": True}).is_success
    assert rt.shares.get(second.id).state == "cancelled"

    # A bank that no longer shares to the exchange offers nothing again either.
    assert client.patch(f"/v1/entries/{entry}", headers=auth, json=off).is_success
    rt.banks.update_bank(OWN, actor="t", share_to=[])
    assert client.patch(f"/v1/entries/{entry}", headers=auth, json={"enabled": True}).is_success
    assert rt.shares.get(first.id).state == "cancelled"
    assert len(audit(rt, "exchange.share_reoffered")) == 1
    assert [s.id for s in rt.shares.list(state="pending")] == []
    assert client.get("/v1/exchange-shares?state=pending", headers=legal).json() == []


def test_a_flood_quarantined_entry_left_disabled_takes_its_share_back(
    rt,
    client,
    auth,
    tmp_path,
    ncmec,  # noqa: F811
):
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    _ncmec_sharing(rt, tmp_path, ncmec)
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    for i in range(3):  # three distinct uploads of the file: a flood (threshold 3)
        r = client.post("/v1/screen/hashes", headers=auth,
                        json={"md5": md5(2), "content_ref": f"upload-{i}"})  # fmt: skip
        assert r.json()["verdict"] != "allow", r.text
    (q,) = rt.quarantine.sweep()
    assert rt.shares.get(share.id).state == "pending"  # waiting for the specialist
    r = client.post(f"/v1/quarantines/{q.id}/decision", headers=spec, json={"restore": False})
    assert r.status_code == 200 and r.json()["state"] == "disabled", r.text
    gone = client.get(f"/v1/exchange-shares/{share.id}", headers=legal).json()
    assert gone["state"] == "cancelled"
    assert "flood quarantine" in gone["withdraw_reason"]
