"""The Art. 15/24 transparency report and the TAKE IT DOWN compliance report. (The
statements sent to the DSA Transparency Database: test_dsa_statements.py.)"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from takedown.ids import utcnow
from tests.legal.helpers import confirmed_case


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
