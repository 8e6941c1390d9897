"""DSA statements to the Transparency Database (a local server), the Art. 15/24
transparency report and the TAKE IT DOWN compliance report."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from takedown.config import Settings
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.services.legal.dsa import DsaService
from takedown.store.db import unit_of_work
from takedown.store.models import DsaStatement
from tests.legal.helpers import confirmed_case

TOKEN = "dsa-test-token-0123456789"
REQUIRED = [
    "decision_ground",
    "category",
    "content_type",
    "content_date",
    "application_date",
    "decision_facts",
    "source_type",
    "automated_detection",
    "automated_decision",
    "puid",
]


@contextmanager
def dsa_server(fail: list[int]) -> Iterator[tuple[str, list[dict]]]:
    """Speaks the Transparency Database's statement API: bearer token, required fields,
    a unique puid, 201 with the stored statement's uuid."""
    stored: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Unauthenticated."})
            if fail:
                return self._send(fail.pop(0), {"message": "try later"})
            missing = [f for f in REQUIRED if f not in body]
            decisions = [
                k
                for k in body
                if k.startswith("decision_") and k not in ("decision_ground", "decision_facts")
            ]
            if missing or not decisions or len(body["decision_facts"]) > 5000:
                return self._send(422, {"errors": missing or ["decision"]})
            if any(s["puid"] == body["puid"] for s in stored):
                return self._send(
                    422, {"errors": {"puid": ["The identifier given is not unique."]}}
                )
            stored.append(body)
            return self._send(201, {**body, "uuid": f"uuid-{len(stored)}"})

        def _send(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/statement", stored
    finally:
        server.shutdown()
        server.server_close()


def _dsa(rt: Runtime, url: str | None) -> DsaService:
    return DsaService(
        rt.sessions,
        Settings(dsa_api_url=url or "http://127.0.0.1:9/x", dsa_api_token=TOKEN if url else None),
    )


def test_statements_carry_no_personal_data_and_reach_the_database(rt, client):
    c = confirmed_case(rt, client)
    with dsa_server([503, 429]) as (url, stored):
        dsa = _dsa(rt, url)
        now = utcnow()
        first = dsa.submit_due(now)
        assert first.created >= 4 and first.failed == 2  # 503 and 429 are "not stored"
        with unit_of_work(rt.sessions, write=False) as s:
            rows = list(s.scalars(select(DsaStatement)))
        assert len({r.puid for r in rows}) == len(rows)
        text = " ".join(r.payload for r in rows)
        for personal in ("p1", "acc-a", "poster_a", "social.example", "Apparent child", "@"):
            assert personal not in text, personal
        body = json.loads(rows[0].payload)
        assert body["category"] == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
        assert body["category_specification"] == ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]
        assert body["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
        assert body["source_type"] == "SOURCE_ARTICLE_16"
        later = dsa.submit_due(now + timedelta(hours=7))
        assert later.submitted + first.submitted == len(rows) and later.created == 0
        assert len(stored) == len(rows)
        kinds = {k for s in stored for k in ("decision_visibility", "decision_account") if k in s}
        assert "decision_visibility" in kinds
        assert dsa.collect() == 0  # one statement per action, once
        assert dsa.counts() == {"pending": 0, "submitted": len(rows)}
    assert c.case_id


def test_the_submitter_needs_a_token(rt):
    import pytest

    from takedown.errors import Conflict

    with pytest.raises(Conflict) as err:
        _dsa(rt, None).submit_due()
    assert err.value.code == "dsa_not_configured"


def test_transparency_report_as_json_and_csv(rt, client):
    c = confirmed_case(rt, client)
    start = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = client.get(f"/v1/legal/dsa/transparency?start={start}&end={end}", headers=c.legal)
    assert r.status_code == 200, r.text
    figures = r.json()
    assert figures["notices"]["total"] == 1
    assert figures["notices"]["by_category"] == {"csam": 1}
    assert figures["decisions"]["by_outcome"] == {"violation": 1}
    assert figures["actions"]["by_type"]["item.remove"] == 2
    assert figures["suspensions"]["accounts_suspended"] >= 1
    assert figures["notices"]["median_hours_to_first_action"] is not None
    r = client.get(
        f"/v1/legal/dsa/transparency?start={start}&end={end}&format=csv", headers=c.legal
    )
    rows = dict(csv.reader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert rows["notices.total"] == "1" and rows["actions.by_type.item.remove"] == "2"
    bad = client.get(f"/v1/legal/dsa/transparency?start={end}&end={start}", headers=c.legal)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_date_range"
    naive = client.get(
        "/v1/legal/dsa/transparency?start=2026-01-01T00:00:00&end=2026-02-01T00:00:00",
        headers=c.legal,
    )
    assert naive.json()["code"] == "invalid_date_range"
    r = client.get(f"/v1/legal/dsa/transparency?start={start}&end={end}", headers=c.moderator)
    assert r.status_code == 403


def test_take_it_down_compliance(rt, client):
    from takedown.services.registry.service import ItemInput
    from tests.cases.helpers import user_headers

    rt.registry.upsert_item(ItemInput("ti1", account_id="ex"), actor="t")
    rt.registry.upsert_item(ItemInput("ti2", account_id="ex2", reposts="ti1"), actor="t")
    request = {
        "category": "ncii",
        "reporter_role": "person_depicted",
        "item_ids": ["ti1"],
        "explanation": "A private photo of me, posted without my consent.",
        "good_faith": True,
        "not_consensual": True,
        "signature": "Sam Doe",
        "reporter_name": "Sam Doe",
        "reporter_email": "sam@example.org",
    }
    assert client.post("/v1/reports", json=request).json()["takedown_request"] is True
    late = {**request, "item_ids": ["nowhere-1"]}  # nothing registered there
    client.post("/v1/reports", json=late)
    legal = user_headers(rt, "lex3", "legal")
    start = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = client.get(f"/v1/legal/take-it-down/compliance?start={start}&end={end}", headers=legal)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid_requests"] == 2
    # hidden at once (restrict first), but removed only once a reviewer confirms
    assert report["hidden_within_48h"] == 1 and report["not_hidden"] == 1
    assert report["removed_within_48h"] == 0 and report["not_removed"] == 2
    assert report["copies_found"] == 2 and report["copies_hidden"] == 2
    assert report["copies_removed"] == 0
    assert report["median_hours_to_hidden"] is not None
    assert report["median_hours_to_removal"] is None
    later = rt.transparency.take_it_down(
        utcnow() - timedelta(days=1),
        utcnow() + timedelta(hours=1),
        now=utcnow() + timedelta(hours=49),
    )
    overdue = " | ".join(q["why"] for q in later["requests"] if q["past_48h"])
    assert overdue.count(" | ") == 1 and "not found" in overdue
    assert "not removed within 48 hours" in overdue
    r = client.get(
        f"/v1/legal/take-it-down/compliance?start={start}&end={end}&format=csv", headers=legal
    )
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0][0] == "report_id" and len(lines) == 3


def test_legal_commands(rt, client, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from takedown.cli import app

    c = confirmed_case(rt, client)
    monkeypatch.setenv("TAKEDOWN_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    r = runner.invoke(app, ["legal", "queue"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["case_id"] == c.case_id
    r = runner.invoke(app, ["legal", "run"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["dsa_statements_written"] >= 4
    day = utcnow().date()
    args = ["--start", str(day - timedelta(days=1)), "--end", str(day + timedelta(days=1))]
    r = runner.invoke(app, ["legal", "transparency", *args, "--format", "csv"])
    assert r.exit_code == 0 and "notices.total,1" in r.stdout
    r = runner.invoke(app, ["legal", "take-it-down", *args])
    assert r.exit_code == 0 and json.loads(r.stdout)["valid_requests"] == 0
    r = runner.invoke(
        app, ["legal", "transparency", "--start", "2026-02-01", "--end", "2026-01-01"]
    )
    assert r.exit_code == 2 and "invalid_date_range" in r.output
