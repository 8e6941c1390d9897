"""Sharing the platform's own confirmed hashes out to an exchange (NCMEC's list for
industry), through the HTTP API against the local NCMEC-protocol server, on both
database backends: off unless a bank is set to share; a confirmed case's banked files
become pending shares; only the legal role approves or refuses (others: 403); an
approved share goes through the outbox (a 5xx retried, a 4xx failing with the
exchange's reason), the approval is in the audit log, a refusal sends nothing; the
exchange's next sync recognises our own entry instead of pulling it back in."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import select, update

from takedown.ids import utcnow
from takedown.store.models import AuditEvent, Bank, BankEntry, ExchangeEntry
from tests.cases.helpers import platform_headers, user_headers
from tests.exchanges.ncmec_hash_server import MEMBER_ID, NS, PASSWORD, USER
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq  # noqa: F401

OWN = "own-confirmed"  # the bank a confirmed decision banks its files in


def confirm(rt, client, n: int, spec: dict[str, str]) -> str:
    """Item ``item-n`` with a file of its own (its MD5 and PDQ), reported as abuse
    material and confirmed by a specialist: the file goes into the own bank. Returns
    the case id."""
    p = platform_headers(rt) if n == 1 else confirm.platform  # type: ignore[attr-defined]
    confirm.platform = p  # type: ignore[attr-defined]
    media = {"sha256": f"{n:064x}", "md5": md5(n), "pdq": pdq(n), "pdq_quality": 90}
    r = client.put(f"/v1/items/item-{n}", headers=p, json={"account_id": f"acc-{n}",
                                                           "media": [media]})  # fmt: skip
    assert r.is_success, r.text
    r = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "user",
            "item_ids": [f"item-{n}"],
            "explanation": "Looks like abuse material.",
            "good_faith": True,
        },
    )
    assert r.status_code == 201, r.text
    case = str(r.json()["case_number"])
    body = {"outcome": "violation", "policy": "csam", "reasons": "Confirmed by review."}
    r = client.post(f"/v1/cases/{case}/decisions", headers=spec, json=body)
    assert r.status_code == 201 and r.json()["effective"], r.text
    return case


def audit(rt, action: str) -> list[AuditEvent]:
    with rt.sessions() as s:
        return list(
            s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        )


def test_sharing_needs_a_bank_setting_and_legal_approval(rt, client, auth, tmp_path, ncmec):  # noqa: F811
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    admin = user_headers(rt, "root", "admin")
    # The NCMEC exchange, pulling into a bank of its own.
    ncmec.add(7, "e1", {"md5": md5(99)}, int(time.time()) - 3600)
    r = client.post("/v1/banks", headers=auth, json={"name": "csam", "source": "ncmec"})
    assert r.status_code == 201, r.text
    body = {"name": "ncmec", "type": "ncmec", "bank": "csam", "base_url": ncmec.url,
            "credentials_file": creds_file(tmp_path, f"{USER}:{PASSWORD}", "n")}  # fmt: skip
    assert client.post("/v1/exchanges", headers=auth, json=body).status_code == 201
    assert client.post("/v1/exchanges/ncmec/sync", headers=auth).json()["added"] == 1

    # Off by default: a confirmed case shares nothing.
    confirm(rt, client, 1, spec)
    assert client.get(f"/v1/banks/{OWN}", headers=auth).json()["share_to"] == []
    assert client.get("/v1/exchange-shares", headers=legal).json() == []

    # The bank is set to share; mistakes are refused with a code.
    r = client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": ["nope"]})
    assert r.status_code == 404 and r.json()["code"] == "exchange_not_found"
    body = {**body, "name": "ncii", "type": "stopncii",
            "credentials_file": creds_file(tmp_path, "fetch,sub", "s")}  # fmt: skip
    assert client.post("/v1/exchanges", headers=auth, json=body).status_code == 201
    r = client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": ["ncii"]})
    assert r.status_code == 422 and r.json()["code"] == "exchange_cannot_share"
    r = client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": ["ncmec"]})
    assert r.status_code == 200 and r.json()["share_to"] == ["ncmec"], r.text
    assert [e.actor for e in audit(rt, "bank.sharing_changed")] == ["apikey:test-admin"]

    # Now a confirmed case proposes its file, once, for the legal team.
    case = confirm(rt, client, 2, spec)
    (share,) = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    assert (share["exchange"], share["case_id"], share["state"]) == ("ncmec", case, "pending")
    assert share["signals"] == {"md5": md5(2), "pdq": pdq(2)} and share["bank"] == OWN
    assert ncmec.submissions == []  # nothing leaves without approval

    # Only the legal role sees, approves or refuses shares.
    sid = share["id"]
    for who in (spec, admin, auth, platform_headers(rt)):
        for method, path, json_body in (
            ("get", "/v1/exchange-shares", None),
            ("post", f"/v1/exchange-shares/{sid}/approve", {}),
            ("post", f"/v1/exchange-shares/{sid}/refuse", {"reason": "no"}),
        ):
            kw = {"json": json_body} if json_body is not None else {}
            r = getattr(client, method)(path, headers=who, **kw)
            assert r.status_code == 403 and r.json()["code"] == "forbidden", (path, r.text)
    assert client.get("/v1/exchange-shares").status_code == 401
    bad = client.post(f"/v1/exchange-shares/{sid}/approve", headers=legal,
                      json={"classification": "Z9"})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_classification"

    # Legal approves: into the outbox. NCMEC first answers 503 (the client never
    # retries a POST): tried again later, then taken once.
    r = client.post(f"/v1/exchange-shares/{sid}/approve", headers=legal,
                    json={"classification": "A1", "note": "Industry list."})  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    (event,) = audit(rt, "exchange.share_approved")
    assert event.actor == "user:lee" and event.object_id == sid
    assert json.loads(event.details)["case"] == case
    again = client.post(f"/v1/exchange-shares/{sid}/approve", headers=legal)
    assert again.status_code == 409 and again.json()["code"] == "share_already_decided"
    ncmec.fail_next(503)
    t0 = utcnow()  # one clock: a slow machine must not make the retry due early
    assert rt.shares.send_due(now=t0) == 0
    after = client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()
    assert (after["state"], after["attempts"]) == ("approved", 1)
    assert "503" in after["last_error"] and ncmec.submissions == []
    assert rt.shares.send_due(now=t0 + timedelta(seconds=1)) == 0  # not due yet
    assert rt.shares.send_due(now=t0 + timedelta(minutes=1)) == 1
    sent = client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()
    assert sent["state"] == "sent" and sent["upstream_id"] == f"{MEMBER_ID}-{sid}"
    assert sent["sent_at"] and sent["last_error"] is None
    (xml,) = ncmec.submissions
    assert f'xmlns="{NS}"'.encode() in xml and f"<id>{sid}</id>".encode() in xml
    assert f"<md5>{md5(2)}</md5>".encode() in xml and b"<classification>A1<" in xml
    assert list(ncmec.own_entries()) == [sid]
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0  # sent once
    assert [e.actor for e in audit(rt, "exchange.share_sent")] == ["worker"]

    # The exchange's next sync lists our entry like anyone's: recognised, not pulled in.
    # (A sync ends 5 s before now: this one ends after the entry was taken.)
    result = rt.exchanges.sync("ncmec", actor="t", now=time.time() + 60)
    assert (result.pages, result.added, result.seen, result.rejected) == (1, 0, 0, 0)
    with rt.sessions() as s:
        csam = set(
            s.scalars(
                select(BankEntry.value).join(Bank, Bank.id == BankEntry.bank_id)
                .where(Bank.name == "csam")
            )
        )  # fmt: skip
        upstream = set(s.scalars(select(ExchangeEntry.upstream_id)))
    assert csam == {md5(99)} and upstream == {"7-e1"}
    seen = client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()
    assert seen["upstream_seen_at"] is not None

    # Legal refuses another, saying why: nothing is sent.
    confirm(rt, client, 3, spec)
    (pending,) = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    r = client.post(f"/v1/exchange-shares/{pending['id']}/refuse", headers=legal,
                    json={"reason": "  "})  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "reason_required"
    r = client.post(f"/v1/exchange-shares/{pending['id']}/refuse", headers=legal,
                    json={"reason": "Adult content; not for the CSAM list."})  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "refused", r.text
    (refusal,) = audit(rt, "exchange.share_refused")
    assert refusal.actor == "user:lee"
    assert json.loads(refusal.details)["reason"] == "Adult content; not for the CSAM list."
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0
    assert len(ncmec.submissions) == 1

    # A refusal by the exchange (a 4xx) ends the share as failed, its reason visible.
    confirm(rt, client, 4, spec)
    (pending,) = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    assert client.post(f"/v1/exchange-shares/{pending['id']}/approve", headers=legal).is_success
    ncmec.fail_next(400, message="Invalid pdq fingerprint on entry.")
    assert rt.shares.send_due() == 0
    failed = client.get(f"/v1/exchange-shares/{pending['id']}", headers=legal).json()
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert "HTTP 400" in failed["last_error"] and "Invalid pdq fingerprint" in failed["last_error"]
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0
    states = [s["state"] for s in client.get("/v1/exchange-shares", headers=legal).json()]
    assert states == ["sent", "refused", "failed"]
    bad = client.get("/v1/exchange-shares?state=lost", headers=legal)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_share_state"
    missing = client.post("/v1/exchange-shares/01NOSUCH/approve", headers=legal)
    assert missing.status_code == 404 and missing.json()["code"] == "share_not_found"

    # Sharing off again: a confirmed case proposes nothing.
    r = client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": []})
    assert r.json()["share_to"] == []
    confirm(rt, client, 5, spec)
    assert client.get("/v1/exchange-shares?state=pending", headers=legal).json() == []


def test_a_disabled_file_cannot_be_approved(rt, client, auth, tmp_path, ncmec):  # noqa: F811
    """A file disabled as a false positive after it was proposed is not shared: its
    share is cancelled, pending or approved (test_share_withdrawal.py: one sent)."""
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    rt.exchanges.add("ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
                     credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"))  # fmt: skip
    confirm(rt, client, 1, spec)  # the own bank exists from here on
    rt.banks.update_bank(OWN, actor="t", share_to=["ncmec"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    with rt.sessions() as s:
        entry = s.scalars(select(BankEntry.public_id).where(BankEntry.value == md5(2))).one()
    rt.banks.set_entry_enabled(entry, False, actor="t", reason="a false positive")
    r = client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "share_already_decided"
    cancelled = rt.shares.get(share.id)
    assert cancelled.state == "cancelled" and "a false positive" in (
        cancelled.withdraw_reason or ""
    )
    # Disabled after its approval, before it was sent: cancelled, never sent.
    confirm(rt, client, 3, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    with rt.sessions() as s:
        entry = s.scalars(select(BankEntry.public_id).where(BankEntry.value == pdq(3))).one()
    rt.banks.set_entry_enabled(entry, False, actor="t", reason="a false positive")
    assert rt.shares.get(share.id).state == "cancelled"
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0
    assert ncmec.submissions == []
    # A file whose entry leaves the bank's enabled entries another way (not through a
    # disabling that withdraws shares) cannot be approved, and fails at sending.
    confirm(rt, client, 4, spec)
    confirm(rt, client, 5, spec)
    early, share = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    with rt.sessions() as s:
        s.execute(
            update(BankEntry).where(BankEntry.value.in_([md5(4), md5(5)])).values(enabled=False)
        )
        s.commit()
    r = client.post(f"/v1/exchange-shares/{early.id}/approve", headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "share_not_confirmed"
    assert rt.shares.send_due() == 0
    failed = rt.shares.get(share.id)
    assert failed.state == "failed" and "no longer an enabled entry" in (failed.last_error or "")
    assert ncmec.submissions == []


def test_a_lost_answer_is_recognised_and_sent_once(rt, client, tmp_path, ncmec):  # noqa: F811
    """NCMEC takes the entry but its answer is lost: a sync before the retry recognises
    the entry as ours by its id (not pulled in), and the retry updates the same entry."""
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
    lost = rt.shares.get(share.id)
    assert (lost.state, lost.upstream_id) == ("approved", None) and "504" in lost.last_error
    assert list(ncmec.own_entries()) == [share.id]  # taken all the same
    result = rt.exchanges.sync("ncmec", actor="t", now=time.time() + 60)
    assert (result.added, result.seen) == (0, 0)
    known = rt.shares.get(share.id)
    assert known.upstream_id == f"{MEMBER_ID}-{share.id}" and known.upstream_seen_at
    with rt.sessions() as s:
        assert s.scalars(select(ExchangeEntry.upstream_id)).all() == []
    assert rt.shares.send_due(now=utcnow() + timedelta(minutes=1)) == 1
    assert rt.shares.get(share.id).state == "sent"
    assert len(ncmec.submissions) == 2 and list(ncmec.own_entries()) == [share.id]
