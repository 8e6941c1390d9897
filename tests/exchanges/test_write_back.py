"""Write-back: a reviewer's finding on an entry pulled from exchanges goes back to each
exchange that carries it, through an outbox retried like webhooks, against the local
protocol servers: StopNCII Blocked / NotBlocked (SubmitFeedback with the feedback key),
NCMEC upvote / downvote (PUT …/feedback, the only reason for a downvote). Both
database backends."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import select

from takedown.ids import utcnow
from takedown.store.models import BankEntry, ExchangeFeedback
from tests.cases.helpers import user_headers
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.stopncii_server import FEEDBACK_KEY, FETCH_KEY, SUBSCRIPTION_KEY
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq, stopncii  # noqa: F401


def _entry(rt, value: str) -> str:
    with rt.sessions() as s:
        return s.scalars(select(BankEntry.public_id).where(BankEntry.value == value)).one()


def _feedback(rt) -> list[ExchangeFeedback]:
    with rt.sessions() as s:
        return list(s.scalars(select(ExchangeFeedback).order_by(ExchangeFeedback.id)))


def test_opinions_go_back_with_retries(rt, client, tmp_path, ncmec, stopncii):  # noqa: F811
    base = int(time.time()) - 3600
    stopncii.put("ImagePDQ", pdq(1), "Active", base)
    ncmec.add(7, "e1", {"md5": md5(1)}, base)
    rt.banks.create_bank("ncii", actor="t", source="stopncii")
    rt.banks.create_bank("csam", actor="t", source="ncmec")
    keys = f"{FETCH_KEY},{SUBSCRIPTION_KEY},{FEEDBACK_KEY}"
    rt.exchanges.add(
        "stopncii", type="stopncii", bank="ncii", actor="t", base_url=stopncii.url,
        credentials_file=creds_file(tmp_path, keys, "s"),
    )  # fmt: skip
    rt.exchanges.add(
        "ncmec", type="ncmec", bank="csam", actor="t", base_url=ncmec.url,
        credentials_file=creds_file(tmp_path, f"{USER}:{PASSWORD}", "n"),
    )  # fmt: skip
    rt.exchanges.sync("stopncii", actor="t")
    rt.exchanges.sync("ncmec", actor="t")
    mod = user_headers(rt, "mod", "moderator")
    r = client.post(
        f"/v1/entries/{_entry(rt, pdq(1))}/opinion", json={"confirmed": True}, headers=mod
    )
    assert r.status_code == 200 and r.json() == {"queued": 1}
    r = client.post(
        f"/v1/entries/{_entry(rt, md5(1))}/opinion", json={"confirmed": False}, headers=mod
    )
    assert r.json() == {"queued": 1}
    # The first try of each fails (a 503 from StopNCII: POST is never retried by the
    # client; NCMEC's downvote first asks for the reasons, a GET the client retries four
    # times); the outbox tries again later.
    stopncii.fail_next(503)
    ncmec.fail_next(500, 5)
    # One clock for the three calls: the retry is scheduled from the first call's time,
    # and a slow machine must not make it due before the second.
    t0 = utcnow()
    assert rt.exchanges.send_due(now=t0) == 0
    rows = _feedback(rt)
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("pending", 1)]
    assert "503" in (rows[0].last_error or "") and "500" in (rows[1].last_error or "")
    assert rt.exchanges.send_due(now=t0 + timedelta(seconds=1)) == 0  # not due yet
    assert rt.exchanges.send_due(now=t0 + timedelta(minutes=1)) == 2
    assert [r.state for r in _feedback(rt)] == ["sent", "sent"]
    (body,) = stopncii.feedback
    assert body["hashFeedbacks"][0]["hashValue"] == pdq(1)
    assert body["hashFeedbacks"][0]["feedbackValue"] == "Blocked"
    (path, xml) = ncmec.feedback[0]
    assert path == "/v2/entries/7/e1/MD5/feedback"
    assert b"negative" in xml and b"r-1" in xml  # the only reason NCMEC offers
    # Mistakes: an entry no exchange gave, an unknown one, a person who may not decide.
    rt.banks.add_hashes(
        "csam",
        [__import__("takedown.domain.hashlists").domain.hashlists.HashRecord("md5", md5(9))],
        actor="t",
    )
    own = client.post(
        f"/v1/entries/{_entry(rt, md5(9))}/opinion", json={"confirmed": True}, headers=mod
    )
    assert own.status_code == 422 and own.json()["code"] == "entry_not_from_exchange"
    assert (
        client.post("/v1/entries/nope/opinion", json={"confirmed": True}, headers=mod).json()[
            "code"
        ]
        == "entry_not_found"
    )
    legal = user_headers(rt, "legal", "legal")
    denied = client.post(
        f"/v1/entries/{_entry(rt, pdq(1))}/opinion", json={"confirmed": True}, headers=legal
    )
    assert denied.status_code == 403
    assert json.dumps(body).count(FEEDBACK_KEY) == 0
