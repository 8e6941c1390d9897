"""Write-back from case decisions: items that matched entries pulled from exchanges open
a case, which records those entries; the case's effective decision goes back to the
entries' exchanges (violation: StopNCII Blocked / NCMEC upvote; no violation: NotBlocked
/ downvote), once per entry and outcome, the opposite one when an appeal overturns it;
and it counts in the entry's match history. Through the HTTP API, against the local
protocol servers, on both database backends."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select

from takedown.ids import utcnow
from takedown.store.models import Bank, BankEntry
from tests.cases.helpers import platform_headers, user_headers
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.stopncii_server import FEEDBACK_KEY, FETCH_KEY, SUBSCRIPTION_KEY
from tests.exchanges.test_pull import creds_file, md5, ncmec, pdq, stopncii  # noqa: F401
from tests.exchanges.test_write_back import _feedback


def _entry(rt, value: str, bank: str) -> str:
    """The entry of that bank (a confirmed violation banks its media in the platform's
    own bank too)."""
    with rt.sessions() as s:
        return s.scalars(
            select(BankEntry.public_id)
            .join(Bank, Bank.id == BankEntry.bank_id)
            .where(BankEntry.value == value, Bank.name == bank)
        ).one()


def _decide(client, case: str, headers, outcome: str) -> dict:
    body = {"outcome": outcome, "reasons": f"Reviewed: {outcome.replace('_', ' ')}."}
    if outcome == "violation":
        body["policy"] = "csam"
    r = client.post(f"/v1/cases/{case}/decisions", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _setup(rt, client, auth, tmp_path, ncmec, stopncii) -> None:  # noqa: F811
    base = int(time.time()) - 3600
    stopncii.put("ImagePDQ", pdq(1), "Active", base)
    ncmec.add(7, "e1", {"md5": md5(1)}, base)
    for name, source in (("ncii", "stopncii"), ("csam", "ncmec")):
        r = client.post(
            "/v1/banks",
            headers=auth,
            json={"name": name, "source": source, "match_action": "review"},
        )
        assert r.status_code == 201, r.text
    keys = f"{FETCH_KEY},{SUBSCRIPTION_KEY},{FEEDBACK_KEY}"
    for body in (
        {"name": "stopncii", "type": "stopncii", "bank": "ncii", "base_url": stopncii.url,
         "credentials_file": creds_file(tmp_path, keys, "s")},
        {"name": "ncmec", "type": "ncmec", "bank": "csam", "base_url": ncmec.url,
         "credentials_file": creds_file(tmp_path, f"{USER}:{PASSWORD}", "n")},
    ):  # fmt: skip
        r = client.post("/v1/exchanges", headers=auth, json=body)
        assert r.status_code == 201, r.text
        r = client.post(f"/v1/exchanges/{body['name']}/sync", headers=auth)
        assert r.status_code == 200, r.text


def _register(client, p, item: str, **media: object) -> dict:
    body = {"account_id": f"acc-{item}", "media": [{"sha256": item[-1] * 64, **media}]}
    r = client.put(f"/v1/items/{item}", json=body, headers=p)
    assert r.is_success, r.text
    return r.json()


def test_case_decisions_go_back_to_the_exchanges(rt, client, auth, tmp_path, ncmec, stopncii):  # noqa: F811
    _setup(rt, client, auth, tmp_path, ncmec, stopncii)
    p = platform_headers(rt)
    csam = _register(client, p, "item-a", md5=md5(1))
    ncii = _register(client, p, "item-b", pdq=pdq(1), pdq_quality=90)
    (case_a,) = csam["cases"]
    (case_b,) = ncii["cases"]
    assert case_a != case_b
    spec = [user_headers(rt, f"spec-{i}", "child_safety_specialist") for i in range(4)]

    # A violation: the NCMEC entry is upvoted; nothing for the StopNCII one yet.
    _decide(client, case_a, spec[0], "violation")
    rows = _feedback(rt)
    assert [(r.positive, r.state) for r in rows] == [(True, "pending")]
    md5_entry = _entry(rt, md5(1), "csam")
    history = client.get(f"/v1/entries/{md5_entry}/matches", headers=auth).json()
    assert (history["confirmed"], history["rejected"]) == (1, 0)

    # The uploader appeals and the decision is overturned: a downvote.
    r = client.post(
        f"/v1/cases/{case_a}/appeals",
        headers=p,
        json={"reason": "This is a photo of a cup of coffee, not what it was taken for."},
    )
    assert r.status_code == 201, r.text
    if not _decide(client, case_a, spec[1], "no_violation")["effective"]:  # four eyes
        assert len(_feedback(rt)) == 1  # nothing until the decision is effective
        assert _decide(client, case_a, spec[2], "no_violation")["effective"]
    assert [r.positive for r in _feedback(rt)] == [True, False]
    history = client.get(f"/v1/entries/{md5_entry}/matches", headers=auth).json()
    assert (history["confirmed"], history["rejected"]) == (0, 1)

    # The other case: no violation, twice over (four eyes): NotBlocked, once.
    first = _decide(client, case_b, spec[0], "no_violation")
    if not first["effective"]:
        _decide(client, case_b, spec[3], "no_violation")
    rows = _feedback(rt)
    assert [r.positive for r in rows] == [True, False, False]
    pdq_entry = _entry(rt, pdq(1), "ncii")
    history = client.get(f"/v1/entries/{pdq_entry}/matches", headers=auth).json()
    assert (history["confirmed"], history["rejected"]) == (0, 1)

    # The worker sends them through the exchanges' clients.
    assert rt.exchanges.send_due(now=utcnow() + timedelta(seconds=1)) == 3
    assert [r.state for r in _feedback(rt)] == ["sent"] * 3
    (body,) = stopncii.feedback
    assert body["hashFeedbacks"][0]["hashValue"] == pdq(1)
    assert body["hashFeedbacks"][0]["feedbackValue"] == "NotBlocked"
    assert [path for path, _ in ncmec.feedback] == ["/v2/entries/7/e1/MD5/feedback"] * 2
    up, down = (xml for _, xml in ncmec.feedback)
    assert b"negative" not in up and b"negative" in down


def test_an_entry_a_person_added_queues_nothing(rt, client, auth):
    """A case from a bank entry no exchange gave is decided as before, with nothing to
    send back."""
    r = client.post(
        "/v1/banks", headers=auth, json={"name": "own", "source": "own", "match_action": "review"}
    )
    assert r.status_code == 201, r.text
    client.post(
        "/v1/banks/own/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": md5(5)}]},
    )
    (case,) = _register(client, platform_headers(rt), "item-c", md5=md5(5))["cases"]
    _decide(client, case, user_headers(rt, "spec", "child_safety_specialist"), "violation")
    assert _feedback(rt) == []
    history = client.get(f"/v1/entries/{_entry(rt, md5(5), 'own')}/matches", headers=auth).json()
    assert history["confirmed"] == 1
