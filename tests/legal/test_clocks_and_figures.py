"""Figures counted from the data, and clocks set by hand.

The DSA transparency report's automated decisions, and the TAKE IT DOWN compliance
report's times to hidden and to removal, from scenarios with known numbers and known
times; the admin-only clock override (``POST /v1/admin/clock/...`` and ``takedown
clock``) that makes those times known, refused unless a test or staging deployment
turns it on; overdue states end to end (the case, the queue, the compliance report) and
the six-month appeal window.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from takedown.config import Settings
from takedown.ids import utcnow
from takedown.runtime import Runtime, open_runtime
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, MailMessage
from tests.cases.helpers import parent_report, platform_headers, user_headers


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """A staging deployment: the clock override is on (it is off by default)."""
    return Settings(
        database_url=database_url, data_dir=tmp_path / "data", allow_clock_override=True
    )


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ncii(**extra: object) -> dict[str, object]:
    return {
        "category": "ncii",
        "reporter_role": "person_depicted",
        "explanation": "A private photo of me, posted without my consent.",
        "good_faith": True,
        "not_consensual": True,
        "signature": "Sam Doe",
        "reporter_name": "Sam Doe",
        "reporter_email": "sam@example.org",
        **extra,
    }


class World:
    """The public API as the platform, a reporter, reviewers, legal and an admin."""

    def __init__(self, rt: Runtime, client: TestClient) -> None:
        self.client = client
        self.platform = platform_headers(rt)
        self.mod = user_headers(rt, "mod-a", "moderator")
        self.mod2 = user_headers(rt, "mod-b", "moderator")
        self.legal = user_headers(rt, "lex-a", "legal")
        self.admin = user_headers(rt, "root-a", "admin")

    def item(self, pid: str, account: str, **extra: object) -> None:
        r = self.client.put(
            f"/v1/items/{pid}", headers=self.platform, json={"account_id": account, **extra}
        )
        assert r.status_code in (200, 201), r.text

    def report(self, body: dict[str, object]) -> dict[str, object]:
        r = self.client.post("/v1/reports", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def decide(self, case: str, outcome: str, *, by: dict[str, str] | None = None) -> str:
        body = {"outcome": outcome, "reasons": "Reviewed the reported content in full."}
        if outcome == "violation":
            body["policy"] = "intimate imagery"
        r = self.client.post(f"/v1/cases/{case}/decisions", headers=by or self.mod, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def set_received(self, report_id: object, at: datetime) -> dict[str, object]:
        r = self.client.post(
            f"/v1/admin/clock/reports/{report_id}/received",
            headers=self.admin,
            json={"at": _iso(at)},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def set_decided(self, decision_id: str, at: datetime) -> dict[str, object]:
        r = self.client.post(
            f"/v1/admin/clock/decisions/{decision_id}/decided",
            headers=self.admin,
            json={"at": _iso(at)},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def case(self, case: object) -> dict[str, object]:
        r = self.client.get(f"/v1/cases/{case}", headers=self.legal)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def period(self) -> str:
        start, end = utcnow() - timedelta(days=400), utcnow() + timedelta(hours=1)
        return f"start={_iso(start)}&end={_iso(end)}"


def _clock(case: dict[str, object], name: str) -> dict[str, object]:
    clocks: list[dict[str, object]] = case["clocks"]  # type: ignore[assignment]
    return next(c for c in clocks if c["name"] == name)


# -- DSA: decisions taken solely by automated means ------------------------------------
def test_transparency_counts_automated_and_human_decisions(rt: Runtime, client):
    w = World(rt, client)
    # Case 1: a parent's report of an item and its repost: both hidden on receipt
    # (restrict first: 2 automated), then a reviewer confirms (2 removals by a person,
    # plus the repeat-violation rule's account measures: partially automated), then a
    # third account reposts it: removed on joining, and its account measured, with no
    # person looking (2 automated).
    w.item("c1", "acc-1")
    w.item("c2", "acc-2", reposts="c1")
    one = w.report(parent_report(["c1"]))
    assert one["restricted_items"] == 2
    w.decide(str(one["case_number"]), "violation")
    w.item("c3", "acc-3", reposts="c1")
    # Case 2: a TAKE IT DOWN request, hidden on receipt (1 automated), then a reviewer
    # finds no violation and restores it (1 by a person).
    w.item("n1", "acc-4")
    two = w.report(_ncii(item_ids=["n1"]))
    assert two["restricted_items"] == 1
    w.decide(str(two["case_number"]), "no_violation")

    r = client.get(f"/v1/legal/dsa/transparency?{w.period()}", headers=w.legal)
    assert r.status_code == 200, r.text
    figures = r.json()
    actions, decisions = figures["actions"], figures["decisions"]
    accounts = sum(n for t, n in actions["by_type"].items() if t.startswith("account."))
    assert actions["by_type"]["item.restrict"] == 3
    assert actions["by_type"]["item.remove"] == 3
    assert actions["by_type"]["item.restore"] == 1
    assert accounts >= 2  # the uploader by the reviewer's decision, the late reposter
    assert actions["solely_automated_by_reason"] == {
        "restrict_first": 3,
        "copy_of_confirmed_violation": 2,  # the late repost, and its account
    }
    assert actions["by_automation"] == {
        "fully": 5,
        "partially": accounts - 1,
        "not_automated": 3,  # 2 removals and 1 restoration decided by a reviewer
    }
    assert decisions["solely_automated"] == 5
    assert decisions["partially_automated"] == accounts - 1
    assert decisions["by_a_person"] == 3
    assert decisions["total"] == 2  # the reviewers' two decisions on the cases
    assert actions["total"] == 5 + 3 + accounts - 1
    # the statement of reasons each owner gets (and the DSA database stores) says the same
    sent = client.get("/v1/outbox?limit=1000", headers=w.admin).json()
    said = Counter(a["payload"]["statement_of_reasons"]["automated_decision"] for a in sent)
    assert said == Counter(actions["by_automation"])
    late_copy = next(a for a in sent if a["target_id"] == "c3")
    assert late_copy["payload"]["statement_of_reasons"]["automated_decision"] == "fully"
    r = client.get(f"/v1/legal/dsa/transparency?{w.period()}&format=csv", headers=w.legal)
    rows = dict(csv.reader(io.StringIO(r.text)))
    assert rows["decisions.solely_automated"] == "5"
    assert rows["actions.by_automation.fully"] == "5"
    assert rows["actions.solely_automated_by_reason.copy_of_confirmed_violation"] == "2"


# -- TAKE IT DOWN: hidden and removed, with known times ---------------------------------
def test_take_it_down_report_times_hidden_and_removed(rt: Runtime, client):
    w = World(rt, client)
    now = utcnow()
    # R1: hidden on receipt 30 h ago, removed 20 h after it: within 48 hours.
    w.item("t1", "acc-t1")
    r1 = w.report(_ncii(item_ids=["t1"]))
    d1 = w.decide(str(r1["case_number"]), "violation")
    w.set_received(r1["report_id"], now - timedelta(hours=30))
    w.set_decided(d1, now - timedelta(hours=10))
    # R2: hidden on receipt 72 h ago, removed 50 h after it: late.
    w.item("t2", "acc-t2")
    r2 = w.report(_ncii(item_ids=["t2"]))
    d2 = w.decide(str(r2["case_number"]), "violation")
    w.set_received(r2["report_id"], now - timedelta(hours=72))
    w.set_decided(d2, now - timedelta(hours=22))
    # R3: nothing registered where it points, received 49 h ago: never hidden.
    r3 = w.report(_ncii(item_ids=["nowhere-3"]))
    w.set_received(r3["report_id"], now - timedelta(hours=49))
    # R4: hidden on receipt 49 h ago, nobody decided: hidden is not removed, overdue.
    w.item("t4", "acc-t4")
    r4 = w.report(_ncii(item_ids=["t4"]))
    w.set_received(r4["report_id"], now - timedelta(hours=49))
    # R5: the item appears after the request and is hidden as it joins; the request
    # came 40 h before that. Not removed yet, but the 48 hours still run.
    r5 = w.report(_ncii(urls=["https://social.example/t5"]))
    w.item("t5", "acc-t5", url="https://social.example/t5")
    hidden5 = datetime.fromisoformat(str(w.case(r5["case_number"])["restricted_at"]))
    w.set_received(r5["report_id"], hidden5 - timedelta(hours=40))

    r = client.get(f"/v1/legal/take-it-down/compliance?{w.period()}", headers=w.legal)
    assert r.status_code == 200, r.text
    report = r.json()
    by_id = {q["report_id"]: q for q in report["requests"]}
    q1, q2, q3, q4, q5 = (by_id[str(x["report_id"])] for x in (r1, r2, r3, r4, r5))
    assert (q1["hours_to_hidden"], q1["hours_to_removal"], q1["past_48h"]) == (0.0, 20.0, False)
    assert (q2["hours_to_hidden"], q2["hours_to_removal"], q2["past_48h"]) == (0.0, 50.0, True)
    assert "Removed after 48 hours" in q2["why"] and "hidden" in q2["why"]
    assert q3["hidden_at"] is None and q3["past_48h"] and "not found" in q3["why"]
    assert (q4["hours_to_hidden"], q4["removed_at"], q4["past_48h"]) == (0.0, None, True)
    assert "not removed within 48 hours" in q4["why"]
    assert (q5["hours_to_hidden"], q5["removed_at"], q5["past_48h"]) == (40.0, None, False)
    assert q1["removed_at"] == _iso_plus(q1["received_at"], hours=20)
    assert {k: report[k] for k in _SUMMARY} == {
        "valid_requests": 5,
        "hidden_within_48h": 4,
        "removed_within_48h": 1,
        "past_48h": 3,
        "not_hidden": 1,
        "not_removed": 3,
        "median_hours_to_hidden": 0.0,
        "max_hours_to_hidden": 40.0,
        "median_hours_to_removal": 35.0,
        "max_hours_to_removal": 50.0,
        "copies_found": 4,
        "copies_hidden": 4,
        "copies_removed": 2,
    }
    r = client.get(f"/v1/legal/take-it-down/compliance?{w.period()}&format=csv", headers=w.legal)
    lines = list(csv.DictReader(io.StringIO(r.text)))
    row = next(x for x in lines if x["report_id"] == r2["report_id"])
    assert (row["hours_to_hidden"], row["hours_to_removal"], row["past_48h"]) == (
        "0.0",
        "50.0",
        "True",
    )


_SUMMARY = (
    "valid_requests",
    "hidden_within_48h",
    "removed_within_48h",
    "past_48h",
    "not_hidden",
    "not_removed",
    "median_hours_to_hidden",
    "max_hours_to_hidden",
    "median_hours_to_removal",
    "max_hours_to_removal",
    "copies_found",
    "copies_hidden",
    "copies_removed",
)


def _iso_plus(when: str, **delta: float) -> str:
    return (datetime.fromisoformat(when) + timedelta(**delta)).isoformat()


# -- overdue, end to end ------------------------------------------------------------
def test_a_request_received_49_hours_ago_is_overdue_everywhere(rt: Runtime, client):
    w = World(rt, client)
    w.item("o1", "acc-o1")
    receipt = w.report(_ncii(item_ids=["o1"]))
    case_id = receipt["case_number"]
    fresh = _clock(w.case(case_id), "take_it_down_48h")
    assert fresh["state"] == "on_time"  # hidden at once, but not removed yet
    received = utcnow() - timedelta(hours=49)
    change = w.set_received(receipt["report_id"], received)
    changes = change["changes"]
    assert set(changes) >= {
        "report.received_at",
        "case.opened_at",
        "case.first_report_at",
        "case.restricted_at",  # hidden in the same moment as the request came
        "case.takedown_requested_at",
        "case.takedown_due_at",
        "case.decision_due_at",
    }
    assert changes["case.takedown_due_at"]["new"] == _iso_plus(
        changes["report.received_at"]["new"], hours=48
    )
    # the case
    case = w.case(case_id)
    clock = _clock(case, "take_it_down_48h")
    assert clock["state"] == "overdue"
    due = datetime.fromisoformat(str(clock["due_at"]))
    assert due == datetime.fromisoformat(str(clock["started_at"])) + timedelta(hours=48)
    # the queue
    queue = client.get("/v1/cases", headers=w.mod).json()
    entry = next(c for c in queue if c["id"] == case_id)
    assert _clock(entry, "take_it_down_48h")["state"] == "overdue"
    # the compliance report
    report = client.get(f"/v1/legal/take-it-down/compliance?{w.period()}", headers=w.legal)
    assert report.json()["past_48h"] == 1
    # the alerts: overdue here; a request 40 hours old is due soon; each alerts once
    w.item("o2", "acc-o2")
    soon = w.report(_ncii(item_ids=["o2"]))
    w.set_received(soon["report_id"], utcnow() - timedelta(hours=40))
    rt.legal.alert_email = "legal-alerts@platform.example"
    assert sorted(rt.legal.check_alerts()) == sorted([case_id, soon["case_number"]])
    assert rt.legal.check_alerts() == []
    with unit_of_work(rt.sessions, write=False) as s:
        alerts = {
            (e.action, e.object_id)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("legal.take_%")))
        }
        mails = [m.subject for m in s.scalars(select(MailMessage))]
    assert alerts == {
        ("legal.take_it_down_overdue", case_id),
        ("legal.take_it_down_due_soon", soon["case_number"]),
    }
    assert f"TAKE IT DOWN request overdue: case {case_id}" in mails
    # removing it now meets the request, late: the clock says met, the report says late
    w.decide(str(case_id), "violation")
    assert _clock(w.case(case_id), "take_it_down_48h")["state"] == "met"
    late = client.get(f"/v1/legal/take-it-down/compliance?{w.period()}", headers=w.legal)
    first = next(q for q in late.json()["requests"] if q["case_id"] == case_id)
    assert first["hours_to_removal"] >= 49.0 and first["past_48h"]
    assert late.json()["past_48h"] == 1 and late.json()["not_removed"] == 1
    # every change is in the audit log with the old and new times
    with unit_of_work(rt.sessions, write=False) as s:
        events = list(
            s.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "clock.set_received", AuditEvent.object_id == case_id
                )
            )
        )
    assert len(events) == 1 and events[0].actor == "user:root-a"
    details = json.loads(events[0].details)
    assert details["report"] == receipt["report_id"]
    assert details["changes"]["report.received_at"] == changes["report.received_at"]


def test_the_six_month_appeal_window_with_a_moved_decision(rt: Runtime, client):
    w = World(rt, client)
    w.item("ap1", "acc-ap")
    receipt = w.report(_ncii(item_ids=["ap1"]))
    case_id = str(receipt["case_number"])
    decision = w.decide(case_id, "no_violation")
    # a decision cannot go before its case opened
    r = client.post(
        f"/v1/admin/clock/decisions/{decision}/decided",
        headers=w.admin,
        json={"at": _iso(utcnow() - timedelta(days=184))},
    )
    assert r.status_code == 422 and r.json()["code"] == "clock_out_of_order"
    w.set_received(receipt["report_id"], utcnow() - timedelta(days=200))
    change = w.set_decided(decision, utcnow() - timedelta(days=184))
    assert set(change["changes"]) >= {"decision.decided_at", "case.decided_at"}
    status = client.post(
        "/v1/reports/status",
        json={"case_number": case_id, "token": receipt["status_token"]},
    ).json()
    until = datetime.fromisoformat(status["decision"]["appeal_until"])
    assert until < utcnow()  # the reporter is told the window has passed
    appeal = {"reason": "This is my own holiday photo, not what was reported."}
    r = client.post(f"/v1/cases/{case_id}/appeals", headers=w.platform, json=appeal)
    assert r.status_code == 409 and r.json()["code"] == "appeal_window_closed"
    r = client.post(
        "/v1/reports/appeal",
        json={"case_number": case_id, "token": receipt["status_token"], **appeal},
    )
    assert r.status_code == 409 and r.json()["code"] == "appeal_window_closed"
    # just inside the window: accepted
    w.set_decided(decision, utcnow() - timedelta(days=182))
    r = client.post(
        "/v1/reports/appeal",
        json={"case_number": case_id, "token": receipt["status_token"], **appeal},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "appeal_open"
    # an appeal now follows the decision: the decision cannot move past it
    r = client.post(
        f"/v1/admin/clock/decisions/{decision}/decided",
        headers=w.admin,
        json={"at": _iso(utcnow())},
    )
    assert r.status_code == 422 and r.json()["code"] == "clock_out_of_order"


# -- who may, and when ---------------------------------------------------------------
def test_the_clock_override_is_admin_only_and_checks_its_input(rt: Runtime, client):
    w = World(rt, client)
    w.item("x1", "acc-x")
    receipt = w.report(_ncii(item_ids=["x1"]))
    url = f"/v1/admin/clock/reports/{receipt['report_id']}/received"
    past = {"at": _iso(utcnow() - timedelta(hours=1))}
    for headers in (w.mod, w.legal, w.platform):
        r = client.post(url, headers=headers, json=past)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert client.post(url, json=past).status_code == 401
    r = client.post(url, headers=w.admin, json={"at": "2026-01-01T00:00:00"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_time"  # no zone
    r = client.post(url, headers=w.admin, json={"at": _iso(utcnow() + timedelta(hours=1))})
    assert r.status_code == 422 and r.json()["code"] == "invalid_time"  # the future
    r = client.post("/v1/admin/clock/reports/01NOSUCHREPORT/received", headers=w.admin, json=past)
    assert r.status_code == 404 and r.json()["code"] == "report_not_found"
    r = client.post(
        "/v1/admin/clock/decisions/01NOSUCHDECISION/decided", headers=w.admin, json=past
    )
    assert r.status_code == 404 and r.json()["code"] == "decision_not_found"
    # refused requests changed nothing and recorded nothing
    with unit_of_work(rt.sessions, write=False) as s:
        assert not list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("clock.%"))))


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"allow_clock_override": False}, "clock_override_disabled"),
        ({"ncmec_environment": "production"}, "clock_override_production"),
        ({"dsa_api_token": "a-real-token"}, "clock_override_production"),
    ],
)
def test_the_clock_override_is_refused_unless_staging(
    rt: Runtime, settings: Settings, extra: dict[str, object], code: str
):
    from takedown.api.app import create_app

    other = open_runtime(settings.model_copy(update=extra), migrate=False)
    try:
        with TestClient(create_app(other), raise_server_exceptions=False) as c:
            w = World(other, c)
            w.item("y1", "acc-y")
            receipt = w.report(_ncii(item_ids=["y1"]))
            r = c.post(
                f"/v1/admin/clock/reports/{receipt['report_id']}/received",
                headers=w.admin,
                json={"at": _iso(utcnow() - timedelta(hours=49))},
            )
            assert r.status_code == 403 and r.json()["code"] == code
            case = w.case(receipt["case_number"])
            assert case["reports"][0]["received_at"] == case["first_report_at"]
    finally:
        other.close()


def test_the_clock_command(rt: Runtime, client, settings: Settings):
    """`takedown clock set-received` / `set-decided` in a real process, on and off."""
    w = World(rt, client)
    w.item("z1", "acc-z")
    receipt = w.report(_ncii(item_ids=["z1"]))
    decision = w.decide(str(receipt["case_number"]), "violation")
    env = {
        **os.environ,
        "TAKEDOWN_DATABASE_URL": settings.database_url or "",
        "TAKEDOWN_DATA_DIR": str(settings.data_dir),
        "TAKEDOWN_ALLOW_CLOCK_OVERRIDE": "1",
    }
    env.pop("TAKEDOWN_DSA_API_TOKEN", None)

    def clock(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "takedown.cli", "clock", *args],
            env={**env, **more},
            capture_output=True,
            text=True,
            timeout=120,
        )

    base = utcnow()  # one "now" for both dates: the commands may run minutes apart
    received = _iso(base - timedelta(hours=50))
    done = clock("set-received", str(receipt["report_id"]), received)
    assert done.returncode == 0, done.stderr
    change = json.loads(done.stdout)
    assert change["case_id"] == receipt["case_number"]
    assert change["changes"]["case.takedown_due_at"]["new"] == _iso_plus(
        change["changes"]["report.received_at"]["new"], hours=48
    )
    done = clock("set-decided", decision, _iso(base - timedelta(hours=1)))
    assert done.returncode == 0, done.stderr
    assert "case.removed_at" in json.loads(done.stdout)["changes"]
    assert _clock(w.case(receipt["case_number"]), "take_it_down_48h")["state"] == "met"
    report = client.get(f"/v1/legal/take-it-down/compliance?{w.period()}", headers=w.legal)
    assert report.json()["requests"][0]["hours_to_removal"] == 49.0
    refused = clock("set-decided", decision, "2026-01-01T00:00:00Z", TAKEDOWN_DSA_API_TOKEN="t")
    assert refused.returncode == 2 and "clock_override_production" in refused.stderr
    refused = clock("set-decided", decision, "yesterday")
    assert refused.returncode == 2 and "invalid_time" in refused.stderr
    refused = clock(
        "set-decided", decision, "2026-01-01T00:00:00Z", TAKEDOWN_ALLOW_CLOCK_OVERRIDE="0"
    )
    assert refused.returncode == 2 and "clock_override_disabled" in refused.stderr
    with unit_of_work(rt.sessions, write=False) as s:
        actors = {
            (e.action, e.actor)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action.like("clock.%")))
        }
    assert actors == {("clock.set_received", "cli"), ("clock.set_decided", "cli")}
