"""Sharing the platform's own confirmed hashes to ThreatExchange, through the HTTP API
against the local ThreatExchange-protocol server (python-threatexchange's
``upload_threat_descriptor``: the Graph API's ``POST /threat_descriptors``), on both
database backends: a bank set to share, a confirmed case's file pending for the legal
team, approved, sent as one descriptor per signal into the exchange's privacy group (a
transient Graph API error retried by the outbox, a refusal failing the share); the
exchange's next sync recognises our own indicators instead of pulling them in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from takedown.ids import utcnow
from takedown.store.models import Bank, BankEntry, ExchangeEntry
from tests.cases.helpers import user_headers
from tests.exchanges.test_pull import creds_file, md5, pdq
from tests.exchanges.test_sharing import OWN, audit, confirm
from tests.exchanges.threatexchange_server import GROUP, OTHER_APP, TOKEN, ThreatExchangeServer


@pytest.fixture
def te() -> Iterator[ThreatExchangeServer]:
    server = ThreatExchangeServer(page_size=3).start()
    yield server
    server.stop()


def add_te(client, auth, tmp_path, te: ThreatExchangeServer) -> None:
    r = client.post("/v1/banks", headers=auth, json={"name": "gifct", "source": "threatexchange"})
    assert r.status_code == 201, r.text
    cred = creds_file(tmp_path, TOKEN, "te")
    body = {"name": "te", "type": "threatexchange", "bank": "gifct", "base_url": te.url,
            "privacy_group": GROUP, "credentials_file": cred}  # fmt: skip
    r = client.post("/v1/exchanges", headers=auth, json=body)
    assert r.status_code == 201, r.text


def test_sharing_to_threatexchange(rt, client, auth, tmp_path, te):
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    te.put(11, "HASH_MD5", md5(99), int(time.time()) - 3600, owner=OTHER_APP)
    add_te(client, auth, tmp_path, te)
    assert client.post("/v1/exchanges/te/sync", headers=auth).json()["added"] == 1
    confirm(rt, client, 1, spec)  # the own bank exists from here on; sharing is off
    assert client.get("/v1/exchange-shares", headers=legal).json() == []
    r = client.patch(f"/v1/banks/{OWN}", headers=auth, json={"share_to": ["te"]})
    assert r.status_code == 200 and r.json()["share_to"] == ["te"], r.text

    case = confirm(rt, client, 2, spec)
    (share,) = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    assert (share["exchange"], share["exchange_type"], share["case_id"]) == (
        "te", "threatexchange", case)  # fmt: skip
    assert share["signals"] == {"md5": md5(2), "pdq": pdq(2)}
    assert te.submissions == []
    sid = share["id"]
    r = client.post(f"/v1/exchange-shares/{sid}/approve", headers=legal, json={})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text

    # A transient Graph API error (the client never retries a POST): tried again later.
    te.fail_next_post(503)
    assert rt.shares.send_due() == 0
    after = client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()
    assert (after["state"], after["attempts"]) == ("approved", 1)
    assert "FacebookApiException 2" in after["last_error"] and te.submissions == []
    assert rt.shares.send_due(now=utcnow() + timedelta(minutes=1)) == 1
    sent = client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()
    assert sent["state"] == "sent" and sent["last_error"] is None
    ours = te.own_descriptors()
    assert set(ours) == {md5(2), pdq(2)}
    assert sorted(sent["upstream_id"].split(",")) == sorted(ours.values())
    by_type = {f["type"]: f for f in te.submissions}
    assert set(by_type) == {"HASH_MD5", "HASH_PDQ"}
    form = by_type["HASH_PDQ"]
    assert (form["indicator"], form["privacy_type"], form["privacy_members"]) == (
        pdq(2), "HAS_PRIVACY_GROUP", str(GROUP))  # fmt: skip
    assert (form["status"], form["share_level"]) == ("MALICIOUS", "AMBER")
    assert sid in form["description"] and form["tags"] == "takedown_confirmed"
    assert [e.actor for e in audit(rt, "exchange.share_sent")] == ["worker"]
    assert rt.shares.send_due(now=utcnow() + timedelta(hours=2)) == 0  # sent once

    # The next sync lists our indicators like anyone's: recognised, not pulled in.
    r = client.post("/v1/exchanges/te/sync", headers=auth)
    assert r.status_code == 200 and r.json()["added"] == 0, r.text
    with rt.sessions() as s:
        gifct = set(
            s.scalars(
                select(BankEntry.value).join(Bank, Bank.id == BankEntry.bank_id)
                .where(Bank.name == "gifct", BankEntry.enabled.is_(True))
            )
        )  # fmt: skip
        upstream = set(s.scalars(select(ExchangeEntry.upstream_id)))
    assert gifct == {md5(99)} and upstream == {"11"}
    assert client.get(f"/v1/exchange-shares/{sid}", headers=legal).json()["upstream_seen_at"]

    # A refusal (a Graph API error that is not transient) fails the share at once.
    confirm(rt, client, 3, spec)
    (pending,) = client.get("/v1/exchange-shares?state=pending", headers=legal).json()
    assert client.post(f"/v1/exchange-shares/{pending['id']}/approve", headers=legal).is_success
    te.group_closed = True  # the group no longer takes our app's descriptors
    assert rt.shares.send_due() == 0
    failed = client.get(f"/v1/exchange-shares/{pending['id']}", headers=legal).json()
    assert failed["state"] == "failed" and failed["attempts"] == 1
    assert "refused" in failed["last_error"] and "Privacy group" in failed["last_error"]


def test_a_lost_answer_is_sent_again_to_the_same_descriptor(rt, client, auth, tmp_path, te):
    """ThreatExchange takes the descriptor but its answer is lost: a sync before the
    retry recognises the indicator as ours (only our app vouches for it), and the retry
    updates the same descriptor (one per app and indicator)."""
    spec = user_headers(rt, "spec", "child_safety_specialist")
    legal = user_headers(rt, "lee", "legal")
    add_te(client, auth, tmp_path, te)
    confirm(rt, client, 1, spec)
    rt.banks.update_bank(OWN, actor="t", share_to=["te"])
    confirm(rt, client, 2, spec)
    (share,) = rt.shares.list(state="pending")
    assert client.post(f"/v1/exchange-shares/{share.id}/approve", headers=legal).is_success
    te.lose_next_answer = True
    assert rt.shares.send_due() == 0
    lost = rt.shares.get(share.id)
    assert (lost.state, lost.upstream_id) == ("approved", None)
    assert len(te.own_descriptors()) == 1  # the first descriptor was taken
    result = rt.exchanges.sync("te", actor="t")
    assert (result.added, result.seen) == (0, 0)
    assert rt.shares.get(share.id).upstream_seen_at is not None
    with rt.sessions() as s:
        assert s.scalars(select(ExchangeEntry.upstream_id)).all() == []
    assert rt.shares.send_due(now=utcnow() + timedelta(minutes=1)) == 1
    done = rt.shares.get(share.id)
    assert done.state == "sent" and len(te.own_descriptors()) == 2
    assert sorted(done.upstream_id.split(",")) == sorted(te.own_descriptors().values())
