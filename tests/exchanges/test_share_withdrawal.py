"""A share taken back when the file turns out not violating after all, through the
HTTP API against the local exchange-protocol servers, on both database backends: the
decision that confirmed it overturned on appeal (or its entry disabled as a false
positive) cancels a share not sent yet and queues a sent one for withdrawal, sent
through the outbox with retries (ThreatExchange: the library's
``delete_threat_descriptor``; NCMEC offers no call for it: the share ends
``withdraw_failed`` saying what to do), each step audited."""

from __future__ import annotations

import html
import json
import time
from datetime import timedelta

from sqlalchemy import select

from takedown.ids import utcnow
from takedown.store.models import BankEntry
from tests.cases.helpers import user_headers
from tests.console.helpers import sign_in
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq  # noqa: F401
from tests.exchanges.test_sharing import OWN, audit, confirm
from tests.exchanges.test_sharing_threatexchange import add_te, te  # noqa: F401


def overturn(rt, client, case: str) -> None:
    """The uploader appeals and other specialists overturn the decision."""
    r = client.post(f"/v1/cases/{case}/appeals", headers=confirm.platform,  # type: ignore[attr-defined]
                    json={"reason": "This is a photo of a cup of coffee, not abuse."})  # fmt: skip
    assert r.status_code == 201, r.text
    body = {"outcome": "no_violation", "reasons": "On appeal: no violation."}
    for i in range(1, 4):
        who = user_headers(rt, f"appeal-{case}-{i}", "child_safety_specialist")
        r = client.post(f"/v1/cases/{case}/decisions", headers=who, json=body)
        assert r.status_code == 201, r.text
        if r.json()["effective"]:
            return
    raise AssertionError("the appeal decision never became effective")


def test_an_overturned_decision_withdraws_its_threatexchange_share(
    rt,
    client,
    auth,
    tmp_path,
    te,  # noqa: F811
):
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    add_te(client, auth, tmp_path, te)
    confirm(rt, client, 1, spec)
    assert client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": ["te"]}).is_success
    sent_case = confirm(rt, client, 2, spec)
    pending_case = confirm(rt, client, 3, spec)
    first, second = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    assert (first["case_id"], second["case_id"]) == (sent_case, pending_case)
    assert client.post(f"/v1/exchange-shares/{first['id']}/approve", headers=legal).is_success
    assert rt.shares.send_due() == 1
    descriptors = te.own_descriptors()
    assert set(descriptors) == {md5(2), pdq(2)}

    # The pending share's decision is overturned: cancelled, nothing ever sent.
    overturn(rt, client, pending_case)
    cancelled = client.get(f"/v1/exchange-shares/{second['id']}", headers=legal).json()
    assert cancelled["state"] == "cancelled" and cancelled["withdrawn_at"]
    assert "overturned on appeal" in cancelled["withdraw_reason"]
    r = client.post(f"/v1/exchange-shares/{second['id']}/approve", headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "share_already_decided"
    (event,) = audit(rt, "exchange.share_cancelled")
    assert event.object_id == second["id"]
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0
    assert len(te.submissions) == 2  # only the first share's two descriptors

    # The sent share's decision is overturned: queued, withdrawn through the outbox
    # (a transient error first, retried later), each descriptor deleted.
    overturn(rt, client, sent_case)
    queued = client.get(f"/v1/exchange-shares/{first['id']}", headers=legal).json()
    assert queued["state"] == "withdrawing" and queued["withdrawn_at"] is None
    (event,) = audit(rt, "exchange.share_withdrawal_queued")
    assert json.loads(event.details)["upstream_id"] == queued["upstream_id"]
    te.fail_next(503)
    t0 = utcnow()  # one clock: a slow machine must not make the retry due early
    assert rt.shares.withdraw_due(now=t0) == 0
    retry = client.get(f"/v1/exchange-shares/{first['id']}", headers=legal).json()
    assert (retry["state"], retry["attempts"]) == ("withdrawing", 1) and retry["last_error"]
    assert rt.shares.withdraw_due(now=t0 + timedelta(seconds=1)) == 0  # not due yet
    assert rt.shares.withdraw_due(now=t0 + timedelta(minutes=1)) == 1
    done = client.get(f"/v1/exchange-shares/{first['id']}", headers=legal).json()
    assert done["state"] == "withdrawn" and done["withdrawn_at"] and done["last_error"] is None
    assert sorted(te.deletions) == sorted(int(d) for d in descriptors.values())
    assert te.own_descriptors() == {}
    assert [e.actor for e in audit(rt, "exchange.share_withdrawn")] == ["worker"]
    assert rt.shares.withdraw_due(now=utcnow() + timedelta(hours=2)) == 0  # once

    # The exchange's next sync sees the tombstones: nothing pulled in.
    r = client.post("/v1/exchanges/te/sync", headers=auth)
    assert r.status_code == 200 and r.json()["added"] == 0, r.text

    # The legal team's console page says so.
    sign_in(client, "legal")
    page = html.unescape(client.get("/console/legal/shares").text)
    assert "withdrawn" in page and "cancelled" in page
    assert "decision overturned on appeal" in page


def test_a_false_positive_withdraws_and_ncmec_says_it_cannot(rt, client, auth, tmp_path, ncmec):  # noqa: F811
    """A shared file's entry disabled as a false positive: the share is queued for
    withdrawal; NCMEC's API offers no retraction, so it ends withdraw_failed with what
    to do, audited."""
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    rt.exchanges.add("ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
                     credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"))  # fmt: skip
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    assert rt.shares.send_due() == 1
    with rt.sessions() as s:
        entry = s.scalars(select(BankEntry.public_id).where(BankEntry.value == md5(2))).one()
    body = {"enabled": False, "reason": "A false positive: a cup of coffee."}
    r = client.patch(f"/v1/entries/{entry}", headers=auth, json=body)
    assert r.is_success, r.text
    queued = rt.shares.get(share.id)
    assert queued.state == "withdrawing" and "cup of coffee" in (queued.withdraw_reason or "")
    assert rt.shares.withdraw_due() == 0
    failed = rt.shares.get(share.id)
    assert failed.state == "withdraw_failed" and "ask NCMEC" in (failed.last_error or "")
    (event,) = audit(rt, "exchange.share_withdraw_failed")
    assert json.loads(event.details)["upstream_id"] == failed.upstream_id
    assert list(ncmec.own_entries()) == [share.id]  # still there: NCMEC must remove it
    assert rt.shares.withdraw_due(now=utcnow() + timedelta(hours=2)) == 0  # not retried


def test_a_cancelled_share_the_exchange_took_after_all_is_withdrawn(
    rt,
    client,
    auth,
    tmp_path,
    ncmec,  # noqa: F811
):
    """NCMEC took the entry but its answer was lost; the file is then disabled (the
    share is cancelled: as far as we knew, nothing was sent). The next sync finds our
    entry upstream: recognised (not pulled in), and the share goes on to be withdrawn."""
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    rt.exchanges.add("ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
                     credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"))  # fmt: skip
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    ncmec.lose_next_answer = True
    assert rt.shares.send_due() == 0
    with rt.sessions() as s:
        entry = s.scalars(select(BankEntry.public_id).where(BankEntry.value == md5(2))).one()
    body = {"enabled": False, "reason": "A false positive."}
    assert client.patch(f"/v1/entries/{entry}", headers=auth, json=body).is_success
    assert rt.shares.get(share.id).state == "cancelled"
    result = rt.exchanges.sync("ncmec", actor="t", now=time.time() + 60)
    assert (result.added, result.seen) == (0, 0)
    found = rt.shares.get(share.id)
    assert found.state == "withdrawing" and found.upstream_id and found.withdrawn_at is None
    assert rt.shares.withdraw_due() == 0
    assert rt.shares.get(share.id).state == "withdraw_failed"
