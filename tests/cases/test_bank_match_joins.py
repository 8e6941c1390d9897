"""A re-upload that a bank knows, of material whose case is open: it joins that case and
is restricted; the case's other copies are left as they are (each was restricted as it
came), unless an appeal reopened the case after they were restored. Through the HTTP
API on both backends; the hashes are made up (stand-ins for a viral item's picture)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from takedown.runtime import Runtime
from takedown.store.models import OutboxMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers

PICTURE = "a5" * 32  # the viral item's PDQ


def _near(pdq: str, flips: int = 4) -> str:
    v = int(pdq, 16)
    for b in range(flips):
        v ^= 1 << (b * 37)
    return f"{v:064x}"


def _media(pdq: str, k: int) -> dict[str, object]:
    return {"sha256": f"{k:064x}", "md5": f"{k:032x}", "pdq": pdq, "pdq_quality": 90}


def _restricts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return dict(
            s.execute(
                select(OutboxMessage.target_platform_id, func.count())
                .where(OutboxMessage.topic == "item.restrict")
                .group_by(OutboxMessage.target_platform_id)
            ).all()
        )


def _viral_case(
    rt: Runtime, client, admin: dict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    p = platform_headers(rt)
    r = client.post(
        "/v1/banks",
        headers=admin,
        json={
            "name": "hotline",
            "source": "ncmec",
            "match_action": "block",
            "restrict_on_match": True,
        },
    )
    assert r.status_code == 201, r.text
    lines = [{"item": {"id": "orig", "account_id": "up", "media": [_media(PICTURE, 1)]}}]
    lines += [
        {"item": {"id": f"repost-{k}", "account_id": f"fan-{k}", "reposts": "orig"}}
        for k in range(5)
    ]
    # A repost of the re-upload, sent before the re-upload itself (events out of order).
    lines.append({"item": {"id": "reup-repost", "account_id": "fan-9", "reposts": "reup"}})
    body = "\n".join(json.dumps(e) for e in lines).encode()
    headers = {**p, "Content-Type": "application/x-ndjson"}
    assert client.post("/v1/registry/batch", content=body, headers=headers).status_code == 200
    receipt = client.post("/v1/reports", json=parent_report(["orig"])).json()
    # The hotline learns the picture after the report.
    r = client.post(
        "/v1/banks/hotline/entries",
        headers=admin,
        json={"entries": [{"signal_type": "pdq", "value": PICTURE, "quality": 90}]},
    )
    assert r.status_code in (200, 201), r.text
    return receipt, p


def _reupload(client, p: dict[str, str]) -> dict[str, object]:
    line = {"item": {"id": "reup", "account_id": "other", "media": [_media(_near(PICTURE), 2)]}}
    headers = {**p, "Content-Type": "application/x-ndjson"}
    r = client.post("/v1/registry/batch", content=json.dumps(line).encode(), headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_known_reupload_joins_the_open_case_and_only_it_is_restricted(rt: Runtime, client, auth):
    receipt, p = _viral_case(rt, client, auth)
    case = receipt["case_number"]
    copies = ["orig", *(f"repost-{k}" for k in range(5))]
    assert _restricts(rt) == dict.fromkeys(copies, 1)
    out = _reupload(client, p)
    assert out["matched"] == 1 and out["cases"] == [case], out
    for item in ["reup", "reup-repost", *copies]:
        assert client.get(f"/v1/items/{item}", headers=p).json()["visibility"] == "restricted"
    # One action for each new copy; none again for the copies restricted before.
    assert _restricts(rt) == dict.fromkeys([*copies, "reup", "reup-repost"], 1)
    spec = user_headers(rt, "spec", "child_safety_specialist")
    detail = client.get(f"/v1/cases/{case}", headers=spec).json()
    assert detail["copies_total"] == 8
    assert "ncmec" in {f["detail"].split()[-1] for f in detail["priority_factors"]}


def test_an_appeal_reopened_case_is_restricted_again_on_a_known_reupload(rt: Runtime, client, auth):
    receipt, p = _viral_case(rt, client, auth)
    case = receipt["case_number"]
    spec_a = user_headers(rt, "spec-a", "child_safety_specialist")
    spec_b = user_headers(rt, "spec-b", "child_safety_specialist")
    for spec in (spec_a, spec_b):  # minor safety: two people
        r = client.post(
            f"/v1/cases/{case}/decisions",
            headers=spec,
            json={"outcome": "no_violation", "reasons": "Looked benign to us, restored."},
        )
        assert r.status_code == 201, r.text
    assert client.get("/v1/items/repost-3", headers=p).json()["visibility"] == "visible"
    r = client.post(
        "/v1/reports/appeal",
        json={
            "case_number": case,
            "token": receipt["status_token"],
            "reason": "This is my son; please look again.",
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "appeal_open", r.text
    out = _reupload(client, p)
    assert out["cases"] == [case], out
    # A bank now knows the picture: every copy hidden again pending the appeal.
    for item in ["orig", "reup", "reup-repost", *(f"repost-{k}" for k in range(5))]:
        assert client.get(f"/v1/items/{item}", headers=p).json()["visibility"] == "restricted"
