"""Negative banks over the copy graph (issue 19, item 3): media a negative bank matches
(a stand-in "benign meme") is never restricted, demonetized or removed automatically --
when a report restricts first over the copy graph, as a later copy of restricted or
confirmed content (single requests and the batch registry), when a bank match restricts
its case, and in retroactive matching -- while its neighbours are. It joins the case,
marked ``negative_match`` for a person to see. Through the HTTP API, both backends."""

from __future__ import annotations

import json
import random

from sqlalchemy import select

from takedown.runtime import Runtime
from takedown.store.models import AuditEvent
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.console.helpers import sign_in

NDJSON = {"Content-Type": "application/x-ndjson"}
REASONS = "The person depicted is a minor; this is child sexual abuse material."


def _pdq(seed: int, flip: int = 0) -> str:
    bits = random.Random(seed).getrandbits(256) ^ ((1 << flip) - 1)
    return f"{bits:064x}"


def _media(seed: int, flip: int = 0) -> dict[str, object]:
    return {
        "sha256": f"{seed:02x}{flip:02x}" * 16,
        "md5": f"{seed:02x}{flip:02x}" * 8,
        "pdq": _pdq(seed, flip),
        "pdq_quality": 90,
    }


MEME = 50  # the benign picture's seed: its PDQ is in the negative bank


def _negative_bank(client, auth) -> None:
    r = client.post("/v1/banks", headers=auth, json={"name": "benign", "match_action": "negative"})
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/benign/entries",
        headers=auth,
        json={"entries": [{"signal_type": "pdq", "value": _pdq(MEME), "note": "meme"}]},
    )
    assert r.status_code in (200, 201), r.text


def _put(client, headers, item: str, **body: object) -> dict:
    r = client.put(f"/v1/items/{item}", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _visibility(client, headers, *items: str) -> dict[str, str]:
    return {i: client.get(f"/v1/items/{i}", headers=headers).json()["visibility"] for i in items}


_legal: dict[int, dict[str, str]] = {}


def _copies(client, rt: Runtime, case: str) -> dict[str, tuple[str, bool]]:
    if id(rt) not in _legal:
        _legal[id(rt)] = user_headers(rt, "legal-1", "legal")
    legal = _legal[id(rt)]
    r = client.get(f"/v1/cases/{case}", headers=legal)
    assert r.status_code == 200, r.text
    return {c["item_id"]: (c["visibility"], c["negative_match"]) for c in r.json()["copies"]}


def _spared(rt: Runtime) -> set[tuple[str, str]]:
    with rt.sessions() as s:
        return {
            (pid, json.loads(details)["measure"])
            for pid, details in s.execute(
                select(AuditEvent.object_id, AuditEvent.details).where(
                    AuditEvent.action == "item.negative_match_spared"
                )
            )
        }


def test_restrict_first_later_copies_batch_and_confirmed_case_spare_the_negative_banked(
    rt: Runtime, client, auth
):
    p = platform_headers(rt)
    _negative_bank(client, auth)
    _put(client, p, "r", account_id="u1", media=[_media(10)])  # to be reported
    _put(client, p, "same", account_id="u2", media=[_media(10)])  # the same bytes
    _put(client, p, "near", account_id="u3", media=[_media(10, flip=3)])  # a near copy
    # A quote of the reported post carrying a benign meme, and that meme's re-upload.
    _put(client, p, "quote", account_id="u4", quotes="r", media=[_media(MEME, flip=2)])
    _put(client, p, "meme", account_id="u5", media=[_media(MEME, flip=2)])
    _put(client, p, "other", account_id="u6", media=[_media(11)])  # unrelated

    receipt = client.post("/v1/reports", json=parent_report(["r"]))
    assert receipt.status_code == 201, receipt.text
    case = receipt.json()["case_number"]
    assert receipt.json()["restricted_items"] == 3  # r, same, near: not the memes
    assert _visibility(client, p, "r", "same", "near", "quote", "meme", "other") == {
        "r": "restricted",
        "same": "restricted",
        "near": "restricted",
        "quote": "visible",
        "meme": "visible",
        "other": "visible",
    }
    copies = _copies(client, rt, case)
    assert copies == {
        "r": ("restricted", False),
        "same": ("restricted", False),
        "near": ("restricted", False),
        "quote": ("visible", True),  # in the case, for a person to see, marked
        "meme": ("visible", True),
    }
    assert _spared(rt) == {("quote", "restrict"), ("meme", "restrict")}
    sign_in(client, "legal")  # the console's copy graph says so too
    console = client.get(f"/console/cases/{case}").text
    assert console.count("Negative bank: known benign, never restricted automatically") == 2
    client.cookies.clear()

    # Later copies of the restricted content, one request each: a repost is restricted,
    # another re-upload of the meme quoting the reported post is not.
    assert _put(client, p, "repost", account_id="u7", reposts="r")["visibility"] == "restricted"
    later = _put(client, p, "meme2", account_id="u8", quotes="r", media=[_media(MEME, flip=1)])
    assert later["visibility"] == "visible" and case in later["cases"]
    assert later["verdict"] == "allow" and later["matched_banks"] == ["benign"]

    # The same through the batch registry.
    lines = [
        {"item": {"id": "b-repost", "account_id": "u9", "reposts": "r"}},
        {"item": {"id": "b-meme", "account_id": "u9", "quotes": "r", "media": [_media(MEME)]}},
        {"item": {"id": "b-same", "account_id": "u9", "media": [_media(MEME, flip=2)]}},
    ]
    r = client.post(
        "/v1/registry/batch",
        content="\n".join(json.dumps(x) for x in lines).encode(),
        headers={**p, **NDJSON},
    )
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    assert _visibility(client, p, "b-repost", "b-meme", "b-same") == {
        "b-repost": "restricted",
        "b-meme": "visible",
        "b-same": "visible",
    }
    copies = _copies(client, rt, case)
    assert {i for i, (_, negative) in copies.items() if negative} == {
        "quote",
        "meme",
        "meme2",
        "b-meme",
        "b-same",
    }

    # Confirmed by a specialist: the case's copies are removed by that decision (a
    # person's, the memes included: they saw them marked). A later copy joining the
    # confirmed case is removed at once -- unless a negative bank matches it.
    spec = user_headers(rt, "spec-a", "child_safety_specialist")
    r = client.post(
        f"/v1/cases/{case}/decisions",
        headers=spec,
        json={"outcome": "violation", "policy": "csam", "reasons": REASONS},
    )
    assert r.status_code == 201 and r.json()["effective"], r.text
    late = _put(client, p, "late-repost", account_id="u10", reposts="r")
    assert late["visibility"] == "removed"
    late = _put(client, p, "late-meme", account_id="u11", quotes="r", media=[_media(MEME, 1)])
    assert late["visibility"] == "visible" and case in late["cases"]
    assert ("late-meme", "remove") in _spared(rt)
    # Nor is its account measured for it (the reposter's is).
    measured = {a: client.get(f"/v1/accounts/{a}", headers=p).json() for a in ("u10", "u11")}
    assert measured["u10"]["strikes"] == 1, measured
    assert measured["u11"]["strikes"] == 0 and measured["u11"]["status"] == "active", measured


def test_a_bank_match_and_retroactive_matching_spare_the_negative_banked(rt: Runtime, client, auth):
    p = platform_headers(rt)
    _negative_bank(client, auth)
    r = client.post(
        "/v1/banks",
        headers=auth,
        json={
            "name": "ncmec",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    # Registered while no bank knew the listed pictures.
    _put(client, p, "a", account_id="u1", media=[_media(20)])
    _put(client, p, "a-quote", account_id="u2", quotes="a", media=[_media(MEME, flip=2)])
    _put(client, p, "a-repost", account_id="u3", reposts="a")
    # A picture the list carries that a negative bank also holds (an exchange's mistake).
    _put(client, p, "b", account_id="u4", media=[_media(MEME, flip=3)])
    _put(client, p, "c", account_id="u5", media=[_media(21)])  # not listed

    r = client.post(
        "/v1/banks/ncmec/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "pdq", "value": _pdq(20, flip=2)},
                {"signal_type": "pdq", "value": _pdq(MEME, flip=4)},
            ]
        },
    )
    assert r.status_code in (200, 201), r.text
    assert rt.retroscan.run_pending() >= 1
    [job] = client.get("/v1/banks/ncmec/retroscans", headers=auth).json()
    assert job["state"] == "done" and job["matches"] >= 2
    assert _visibility(client, p, "a", "a-quote", "a-repost", "b", "c") == {
        "a": "restricted",  # matched, and its copies through the copy graph...
        "a-repost": "restricted",
        "a-quote": "visible",  # ...but not the benign meme quoting it
        "b": "visible",  # matched, and benign: no restriction, no case of its own
        "c": "visible",
    }
    listed = client.get("/v1/cases", headers=auth).json()
    [case] = listed["cases"] if isinstance(listed, dict) else listed  # a's; b has none
    copies = _copies(client, rt, case["id"])
    assert copies["a-quote"] == ("visible", True) and copies["a"] == ("restricted", False)

    # At upload, a new copy of the listed picture in the same case is restricted and
    # the meme is not, by the same rule (hash_match: open_for_match over the graph).
    up = _put(client, p, "d", account_id="u6", media=[_media(20, flip=1)])
    assert up["verdict"] == "block" and up["visibility"] == "restricted"
    meme = _put(client, p, "e", account_id="u7", media=[_media(MEME, flip=4)])
    assert meme["verdict"] == "allow" and meme["visibility"] == "visible"


def test_a_bystanders_intimate_imagery_report_keeps_the_benign_copy_earning(
    rt: Runtime, client, auth
):
    """Not hidden, but not earning while reviewed: every copy but the negative-banked."""
    p = platform_headers(rt)
    _negative_bank(client, auth)
    _put(client, p, "n1", account_id="u1", monetized=True, media=[_media(30)])
    _put(client, p, "n2", account_id="u2", monetized=True, media=[_media(30)])
    _put(client, p, "n3", account_id="u3", monetized=True, quotes="n1", media=[_media(MEME)])
    r = client.post(
        "/v1/reports",
        json={
            "category": "ncii",
            "reporter_role": "user",
            "item_ids": ["n1"],
            "explanation": "Shared without consent.",
            "good_faith": True,
            "reporter_name": "Ann",
            "reporter_email": "ann@example.org",
        },
    )
    assert r.status_code == 201 and r.json()["restricted_items"] == 0, r.text
    paused = {
        i: client.get(f"/v1/items/{i}", headers=p).json()["monetization_paused"]
        for i in ("n1", "n2", "n3")
    }
    assert paused == {"n1": True, "n2": True, "n3": False}
    assert _spared(rt) == {("n3", "demonetize")}
