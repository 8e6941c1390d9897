"""The evidence vault through the real API: encrypted preservation, holds (a year from
the report at least), deletion refused while held, destruction on a law-enforcement
request, legal staff only, every access logged with its purpose, export with hashes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from takedown.cli import app
from takedown.domain.evidence import one_year_after, preservation_until
from takedown.runtime import Runtime
from takedown.services.evidence.vault import ReportSent
from takedown.store.models import AuditEvent, Blob, Media
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import standin_bytes

PHOTO = standin_bytes("coffee.png")  # a stand-in photo, never real material
WHY = "Preparing the CyberTipline report for this case"


@pytest.fixture
def case_id(rt: Runtime, client) -> str:
    p = platform_headers(rt)
    for item in ("e1", "e2"):
        assert client.put(f"/v1/items/{item}", json={"account_id": "acc-1"}, headers=p).is_success
        r = client.post(f"/v1/items/{item}/media", headers=p, files={"file": ("x.png", PHOTO)})
        assert r.status_code == 200, r.text
    r = client.post("/v1/reports", json=parent_report(["e1", "e2"]))
    assert r.status_code == 201, r.text
    return str(r.json()["case_number"])


@pytest.fixture
def legal(rt: Runtime) -> dict[str, str]:
    return user_headers(rt, "lena-legal", "legal")


def _preserve(client, case_id: str, legal: dict[str, str]) -> dict:
    r = client.post("/v1/evidence", json={"case_id": case_id, "purpose": WHY}, headers=legal)
    assert r.status_code == 201, r.text
    return r.json()


def _audit(rt: Runtime, action: str) -> list[dict]:
    with rt.sessions() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        return [{"actor": e.actor, **json.loads(e.details)} for e in rows]


def test_preserved_encrypted_with_context_and_media(rt: Runtime, client, case_id, legal):
    ev = _preserve(client, case_id, legal)
    names = {f["name"]: f for f in ev["files"]}
    media_name = f"media/{hashlib.sha256(PHOTO).hexdigest()}.png"
    assert set(names) == {"context.json", media_name}
    assert names[media_name]["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    # At rest: the context is a sealed blob; no plaintext of it in the database row.
    with rt.sessions() as s:
        sealed = s.scalars(select(Blob.sealed).where(Blob.kind == "evidence")).one()
    # Markers of 5+ bytes: a 2-byte one (an item id like "e1") turns up by chance in a few
    # kilobytes of random ciphertext now and then.
    assert b"acc-1" not in sealed and b"blackmailed" not in sealed
    r = client.get(f"/v1/evidence/{ev['id']}/context", params={"purpose": WHY}, headers=legal)
    doc = r.json()
    assert doc["case"]["id"] == case_id and doc["case"]["minor_safety"] is True
    assert {i["item_id"] for i in doc["items"]} == {"e1", "e2"}
    assert doc["accounts"][0]["account_id"] == "acc-1"
    assert doc["media"][0]["bytes_preserved"] is True
    assert "blackmailed" in doc["reports"][0]["explanation"]
    assert any(e["action"] == "case.opened" for e in doc["audit_trail"])
    assert _audit(rt, "evidence.context_read") == [{"actor": "user:lena-legal", "purpose": WHY}]


def test_legal_only_and_purpose_required(rt: Runtime, client, case_id, legal):
    for role in ("moderator", "child_safety_specialist", "platform"):
        h = user_headers(rt, f"u-{role}", role)
        r = client.post("/v1/evidence", json={"case_id": case_id, "purpose": WHY}, headers=h)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    _, key = rt.api_keys.create("robot", ["admin"], actor="t")  # machines never
    r = client.post(
        "/v1/evidence",
        json={"case_id": case_id, "purpose": WHY},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 403
    admin = user_headers(rt, "ada-admin", "admin")  # an admin person may
    assert client.post(
        "/v1/evidence", json={"case_id": case_id, "purpose": WHY}, headers=admin
    ).is_success
    r = client.post("/v1/evidence", json={"case_id": case_id}, headers=legal)
    assert r.status_code == 422 and r.json()["code"] == "purpose_required"
    ev = _preserve(client, case_id, legal)
    r = client.get(f"/v1/evidence/{ev['id']}", params={"purpose": "  "}, headers=legal)
    assert r.json()["code"] == "purpose_required"
    r = client.get("/v1/evidence", params={"case_id": case_id, "purpose": WHY}, headers=legal)
    assert [e["id"] for e in r.json()][-1] == ev["id"] and len(r.json()) == 2
    r = client.get("/v1/evidence/01NOSUCH", params={"purpose": WHY}, headers=legal)
    assert r.status_code == 404 and r.json()["code"] == "evidence_not_found"
    r = client.post("/v1/evidence", json={"case_id": "01NOSUCH", "purpose": WHY}, headers=legal)
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    assert [e["purpose"] for e in _audit(rt, "evidence.listed")] == [WHY]
    assert _audit(rt, "evidence.viewed") == []  # refused reads leave nothing
    assert rt.audit.verify().ok


def test_preservation_hold_a_year_from_the_report_and_deletion_refused(
    rt: Runtime, client, case_id, legal
):
    ev = _preserve(client, case_id, legal)
    done = datetime.now(UTC) - timedelta(hours=1)
    r = client.post(
        f"/v1/evidence/cases/{case_id}/reported",
        json={"completed_at": done.isoformat(), "reference": "CT-12345"},
        headers=legal,
    )
    assert r.status_code == 200, r.text
    (view,) = r.json()
    assert view["id"] == ev["id"]
    until = datetime.fromisoformat(view["held_until"])
    assert until >= one_year_after(done) and until >= done + timedelta(days=365)
    (hold,) = view["holds"]
    assert hold["kind"] == "preservation" and "CT-12345" in hold["reason"]
    r = client.post(f"/v1/evidence/{ev['id']}/delete", json={"reason": "cleanup"}, headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "evidence_held"
    held = datetime.fromisoformat(r.json()["details"]["held_until"])
    assert held == datetime.fromisoformat(view["held_until"])
    r = client.post(
        f"/v1/evidence/{ev['id']}/holds/{hold['id']}/release", json={"reason": "x"}, headers=legal
    )
    assert r.status_code == 409 and r.json()["code"] == "hold_not_releasable"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = client.post(
        f"/v1/evidence/cases/{case_id}/reported", json={"completed_at": future}, headers=legal
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_completed_at"


def test_leap_day_and_configured_period():
    leap = datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert one_year_after(leap) == datetime(2029, 3, 1, 12, tzinfo=UTC)
    t = datetime(2027, 3, 1, tzinfo=UTC)  # 365 days later is 29 Feb 2028: short of a year
    assert preservation_until(t, timedelta(days=365)) == datetime(2028, 3, 1, tzinfo=UTC)
    assert preservation_until(t, timedelta(days=730)) == t + timedelta(days=730)
    assert preservation_until(t, timedelta(days=30)) == datetime(2028, 3, 1, tzinfo=UTC)


def test_mark_reported_preserves_and_keeps_the_report_sent(rt: Runtime, client, case_id):
    """What the CyberTipline code calls when NCMEC confirms /finish."""
    xml = b"<report><incidentSummary/></report>"
    done = datetime.now(UTC)
    (view,) = rt.evidence.mark_reported(
        case_id, done, "system", reference="CT-1", report=ReportSent("cybertipline.xml", xml)
    )
    names = {f.name: f for f in view.files}
    assert names["reports/cybertipline.xml"].sha256 == hashlib.sha256(xml).hexdigest()
    assert view.reported_at == done and view.held_until is not None
    # A later report extends the hold; it never shortens it.
    (again,) = rt.evidence.mark_reported(case_id, done + timedelta(seconds=1), "system")
    assert again.held_until is not None and again.held_until > view.held_until
    (same,) = rt.evidence.mark_reported(case_id, done - timedelta(days=30), "system")
    assert same.held_until == again.held_until


def test_legal_holds_extend_and_release(rt: Runtime, client, case_id, legal):
    ev = _preserve(client, case_id, legal)
    soon = datetime.now(UTC) + timedelta(days=30)
    url = f"/v1/evidence/{ev['id']}/holds"
    r = client.post(url, json={"until": soon.isoformat(), "reason": "Litigation"}, headers=legal)
    assert r.status_code == 201, r.text
    hold = r.json()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = client.post(url, json={"until": past, "reason": "x"}, headers=legal)
    assert r.status_code == 422 and r.json()["code"] == "invalid_hold_until"
    r = client.post(
        f"{url}/{hold['id']}/extend", json={"until": soon.isoformat(), "reason": "x"}, headers=legal
    )
    assert r.json()["code"] == "invalid_hold_until"  # not later than the current end
    later = (soon + timedelta(days=60)).isoformat()
    r = client.post(
        f"{url}/{hold['id']}/extend", json={"until": later, "reason": "Court order"}, headers=legal
    )
    assert r.status_code == 200 and r.json()["until"].startswith(later[:19])
    r = client.post(f"{url}/01NOSUCH/extend", json={"until": later, "reason": "x"}, headers=legal)
    assert r.status_code == 404 and r.json()["code"] == "hold_not_found"
    r = client.post(f"/v1/evidence/{ev['id']}/delete", json={"reason": "done"}, headers=legal)
    assert r.json()["code"] == "evidence_held"
    r = client.post(f"{url}/{hold['id']}/release", json={"reason": ""}, headers=legal)
    assert r.status_code == 422 and r.json()["code"] == "reason_required"
    r = client.post(f"{url}/{hold['id']}/release", json={"reason": "Settled"}, headers=legal)
    assert r.status_code == 200 and r.json()["released_by"] == "user:lena-legal"
    r = client.post(
        f"{url}/{hold['id']}/extend", json={"until": later, "reason": "x"}, headers=legal
    )
    assert r.status_code == 409 and r.json()["code"] == "hold_released"
    r = client.post(
        f"/v1/evidence/{ev['id']}/delete", json={"reason": "Retention over"}, headers=legal
    )
    assert r.status_code == 200 and r.json()["state"] == "deleted"
    with rt.sessions() as s:  # the context is gone; the registry's media bytes stay
        assert s.scalars(select(Blob).where(Blob.kind == "evidence")).all() == []
        assert s.scalars(select(Media.blob_id)).one() is not None
    r = client.get(f"/v1/evidence/{ev['id']}/context", params={"purpose": WHY}, headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "evidence_closed"
    r = client.post(url, json={"until": later, "reason": "x"}, headers=legal)
    assert r.json()["code"] == "evidence_closed"


def test_destruction_on_law_enforcement_request(rt: Runtime, client, case_id, legal):
    ev = _preserve(client, case_id, legal)
    done = datetime.now(UTC)
    rt.evidence.mark_reported(case_id, done, "system")
    url = f"/v1/evidence/{ev['id']}/destroy"
    r = client.post(url, json={"requested_by": "", "reference": "X"}, headers=legal)
    assert r.status_code == 422 and r.json()["code"] == "destruction_request_required"
    soon = (done + timedelta(days=5)).isoformat()
    r = client.post(
        f"/v1/evidence/{ev['id']}/holds", json={"until": soon, "reason": "Suit"}, headers=legal
    )
    hold = r.json()
    body = {"requested_by": "Det. A. Smith, County Sheriff ICAC", "reference": "LE-2026-77"}
    r = client.post(url, json=body, headers=legal)
    assert r.status_code == 409 and r.json()["code"] == "evidence_legal_hold"
    client.post(
        f"/v1/evidence/{ev['id']}/holds/{hold['id']}/release",
        json={"reason": "Ended"},
        headers=legal,
    )
    # The statutory hold does not stop law enforcement's own request.
    r = client.post(url, json=body, headers=legal)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["state"] == "destroyed" and view["le_reference"] == "LE-2026-77"
    assert view["le_requested_by"].startswith("Det. A. Smith") and view["held_until"] is None
    with rt.sessions() as s:
        assert s.scalars(select(Blob)).all() == []  # context and media bytes
        assert s.scalars(select(Media.blob_id)).one() is None  # the hashes stay
    (event,) = _audit(rt, "evidence.destroyed")
    assert event["reference"] == "LE-2026-77" and event["blobs_destroyed"] == 2
    r = client.post(url, json=body, headers=legal)
    assert r.json()["code"] == "evidence_closed"
    assert rt.audit.verify().ok


def test_destruction_keeps_media_another_record_holds(rt: Runtime, client, case_id, legal):
    first, second = _preserve(client, case_id, legal), _preserve(client, case_id, legal)
    body = {"requested_by": "NCA", "reference": "NCA-1"}
    r = client.post(f"/v1/evidence/{first['id']}/destroy", json=body, headers=legal)
    assert r.status_code == 200
    (event,) = _audit(rt, "evidence.destroyed")
    assert event["media_kept_for_other_evidence"] == [hashlib.sha256(PHOTO).hexdigest()]
    r = client.post(f"/v1/evidence/{second['id']}/export", json={"purpose": WHY}, headers=legal)
    assert r.status_code == 200


def test_export_package_with_manifest(rt: Runtime, client, case_id, legal):
    ev = _preserve(client, case_id, legal)
    r = client.post(
        f"/v1/evidence/{ev['id']}/export",
        json={"purpose": "Answering a warrant", "le_reference": "W-9"},
        headers=legal,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    manifest_bytes = zf.read("manifest.json")
    assert hashlib.sha256(manifest_bytes).hexdigest() == r.headers["x-manifest-sha256"]
    manifest = json.loads(manifest_bytes)
    assert manifest["law_enforcement_reference"] == "W-9" and manifest["case_id"] == case_id
    for f in manifest["files"]:
        assert hashlib.sha256(zf.read(f["name"])).hexdigest() == f["sha256"]
    sums = zf.read("SHA256SUMS").decode().splitlines()
    assert (
        f"{hashlib.sha256(PHOTO).hexdigest()}  media/{hashlib.sha256(PHOTO).hexdigest()}.png"
        in sums
    )
    assert zf.read(f"media/{hashlib.sha256(PHOTO).hexdigest()}.png") == PHOTO
    (event,) = _audit(rt, "evidence.exported")
    assert event["manifest_sha256"] == r.headers["x-manifest-sha256"]
    assert event["purpose"] == "Answering a warrant" and event["le_reference"] == "W-9"
    r = client.post(f"/v1/evidence/{ev['id']}/export", json={}, headers=legal)
    assert r.json()["code"] == "purpose_required"


def test_evidence_cli(rt: Runtime, client, case_id, tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(rt.settings.data_dir))
    runner = CliRunner()
    r = runner.invoke(app, ["evidence", "preserve", case_id, "--purpose", WHY])
    assert r.exit_code == 0, r.output
    ev_id = json.loads(r.stdout)["id"]
    r = runner.invoke(app, ["evidence", "reported", case_id, "--at", "2026-01-05T10:00:00"])
    assert r.exit_code == 0 and "2027-01-05" in r.stdout
    r = runner.invoke(app, ["evidence", "delete", ev_id, "--reason", "cleanup"])
    assert r.exit_code == 2 and "evidence_held" in r.output
    out = tmp_path / "pkg.zip"
    r = runner.invoke(app, ["evidence", "export", ev_id, "--purpose", WHY, "-o", str(out)])
    assert r.exit_code == 0 and zipfile.ZipFile(out).read("manifest.json")
    r = runner.invoke(app, ["evidence", "show", ev_id, "--purpose", "no"])
    assert r.exit_code == 2 and "purpose_required" in r.output
