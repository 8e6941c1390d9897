"""A large case's priority after its copies' view counts change: recomputed in the
background (``TAKEDOWN_PRIORITY_INLINE_COPIES``), not by the registry request; a small
case's at once, as before. Driven through the API, the CLI and a real server process."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from takedown.api.app import create_app
from takedown.cli.main import app as cli
from takedown.config import Settings
from takedown.runtime import open_runtime
from tests.api.test_observability import _key, _samples, _value
from tests.cases.helpers import PASSWORD, parent_report, platform_headers, user_headers
from tests.conftest import start_server

NDJSON = {"Content-Type": "application/x-ndjson"}


def _media(k: int) -> dict[str, object]:
    return {"sha256": f"{k:02x}" * 32, "md5": f"{k:02x}" * 16, "pdq": f"{k:02x}" * 32}


def _lines() -> bytes:
    """A viral stand-in: big0 and three reposts of it (a case of four copies once big0 is
    reported), and small0 alone (a case of one)."""
    events: list[dict[str, object]] = [
        {"item": {"id": "big0", "account_id": "a0", "view_count": 10, "media": [_media(1)]}}
    ]
    events += [
        {"item": {"id": f"big{k}", "account_id": f"a{k}", "reposts": "big0", "view_count": 10}}
        for k in (1, 2, 3)
    ]
    events.append(
        {"item": {"id": "small0", "account_id": "a9", "view_count": 10, "media": [_media(2)]}}
    )
    return "\n".join(json.dumps(e) for e in events).encode()


def _views(*pairs: tuple[str, int]) -> bytes:
    return "\n".join(
        json.dumps({"views": {"item_id": i, "view_count": n}}) for i, n in pairs
    ).encode()


def _reach(case: dict[str, object]) -> str | None:
    factors = case["priority_factors"]
    assert isinstance(factors, list)
    return next((f["detail"] for f in factors if f["name"] == "reach"), None)


def test_a_large_cases_priority_is_recomputed_by_the_background_round(
    settings: Settings, monkeypatch
):
    # Cases of more than two copies wait for the round; the serving process's own round
    # is an hour away, so only `takedown worker --once` runs it here.
    s = settings.model_copy(update={"priority_inline_copies": 2, "priority_refresh_seconds": 3600})
    rt = open_runtime(s, migrate=False)
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            p = platform_headers(rt)
            r = client.post("/v1/registry/batch", content=_lines(), headers={**p, **NDJSON})
            assert r.status_code == 200 and r.json()["items_created"] == 5, r.text
            big = client.post("/v1/reports", json=parent_report(["big0"])).json()["case_number"]
            small = client.post("/v1/reports", json=parent_report(["small0"])).json()["case_number"]
            spec = user_headers(rt, "spec", "child_safety_specialist")

            def case(number: str) -> dict[str, object]:
                got = client.get(f"/v1/cases/{number}", headers=spec)
                assert got.status_code == 200, got.text
                return dict(got.json())

            assert len(case(big)["copies"]) == 4 and len(case(small)["copies"]) == 1  # type: ignore[arg-type]
            big_before, small_before = case(big), case(small)
            assert _reach(big_before) == "40 views" and _reach(small_before) == "10 views"

            body = _views(("big2", 500_000), ("small0", 70_000))
            r = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON})
            assert r.status_code == 200 and r.json()["views_changed"] == 2, r.text
            # The small case at once; the large one keeps its priority for now.
            small_after = case(small)
            assert small_after["priority"] > small_before["priority"]  # type: ignore[operator]
            assert _reach(small_after) == "70000 views"
            assert case(big)["priority"] == big_before["priority"]
            assert _reach(case(big)) == "40 views"
            # The single request's way waits alike.
            r = client.post("/v1/items/big3/views", json={"view_count": 90}, headers=p)
            assert r.status_code == 200 and r.json()["changed"] is True
            assert _reach(case(big)) == "40 views"
            metrics = _key(rt, "metrics")
            waiting = _samples(client.get("/metrics", headers=metrics).text)
            assert _value(waiting, "takedown_case_priorities_waiting") == 1
            assert _value(waiting, "takedown_case_priority_oldest_wait_seconds") >= 0

            # The background round: what `takedown serve` and `takedown worker` run.
            monkeypatch.setenv("TAKEDOWN_DATABASE_URL", s.resolved_database_url)
            monkeypatch.setenv("TAKEDOWN_DATA_DIR", str(s.data_dir))
            monkeypatch.setenv("TAKEDOWN_PRIORITY_INLINE_COPIES", "2")
            out = CliRunner().invoke(cli, ["worker", "--once"])
            assert out.exit_code == 0, out.output
            assert "1 case priority recomputed" in out.output
            big_after = case(big)
            assert big_after["priority"] > big_before["priority"]  # type: ignore[operator]
            assert _reach(big_after) == f"{10 + 10 + 500_000 + 90} views"
            assert any(f["name"] == "growth" for f in big_after["priority_factors"])  # type: ignore[union-attr]
            # Nothing waits any more.
            out = CliRunner().invoke(cli, ["worker", "--once"])
            assert "0 case priorities recomputed" in out.output, out.output
            assert case(big)["priority"] == big_after["priority"]
            done = _samples(client.get("/metrics", headers=metrics).text)
            assert _value(done, "takedown_case_priorities_waiting") == 0

            # Copies joining re-rank a case the same way: their views count, and their
            # accounts' flags. The small case at once...
            flagged = {"flagged": True, "flag_reason": "shares such material"}
            r = client.put("/v1/accounts/a8", json=flagged, headers=p)
            assert r.status_code == 200, r.text
            more = [
                {
                    "item": {
                        "id": "small1",
                        "account_id": "a8",
                        "reposts": "small0",
                        "view_count": 30_000,
                    }
                },
                {
                    "item": {
                        "id": "big4",
                        "account_id": "a8",
                        "reposts": "big0",
                        "view_count": 1_000,
                    }
                },
            ]
            body = "\n".join(json.dumps(e) for e in more).encode()
            r = client.post("/v1/registry/batch", content=body, headers={**p, **NDJSON})
            assert r.status_code == 200 and sorted(r.json()["cases"]) == sorted([big, small])
            small_now = case(small)
            assert _reach(small_now) == "100000 views"
            assert any(f["name"] == "account_history" for f in small_now["priority_factors"])  # type: ignore[union-attr]
            # ... the large one by the round.
            assert case(big)["priority"] == big_after["priority"]
            out = CliRunner().invoke(cli, ["worker", "--once"])
            assert "1 case priority recomputed" in out.output, out.output
            big_now = case(big)
            assert _reach(big_now) == f"{10 + 10 + 500_000 + 90 + 1_000} views"
            assert any(f["name"] == "account_history" for f in big_now["priority_factors"])  # type: ignore[union-attr]
    finally:
        rt.close()


def test_a_serving_process_recomputes_waiting_priorities_itself(
    sqlite_template: Path, tmp_path: Path
):
    database = tmp_path / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    settings = Settings(database_url=f"sqlite:///{database}", data_dir=tmp_path / "data")
    rt = open_runtime(settings, migrate=False)
    _, key = rt.api_keys.create("platform", ["platform"], actor="test")
    rt.users.create("spec", PASSWORD, "child_safety_specialist", actor="test")
    rt.close()
    env = {
        "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
        "TAKEDOWN_DATA_DIR": str(tmp_path / "data"),
        "TAKEDOWN_ACCESS_LOG": "false",
        "TAKEDOWN_PRIORITY_INLINE_COPIES": "2",
        "TAKEDOWN_PRIORITY_REFRESH_SECONDS": "0.2",
    }
    server, port = start_server(env, workers=2)  # two rounds, one per process
    base = f"http://127.0.0.1:{port}"
    p = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get("/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
            r = http.post("/v1/registry/batch", content=_lines(), headers={**p, **NDJSON})
            assert r.status_code == 200, r.text
            number = http.post("/v1/reports", json=parent_report(["big0"])).json()["case_number"]
            token = http.post(
                "/v1/auth/token", json={"username": "spec", "password": PASSWORD}
            ).json()["token"]
            spec = {"Authorization": f"Bearer {token}"}
            before = http.get(f"/v1/cases/{number}", headers=spec).json()
            r = http.post(
                "/v1/registry/batch", content=_views(("big1", 800_000)), headers={**p, **NDJSON}
            )
            assert r.status_code == 200 and r.json()["views_changed"] == 1, r.text
            deadline = time.monotonic() + 60
            while _reach(after := http.get(f"/v1/cases/{number}", headers=spec).json()) != (
                "800030 views"
            ):
                assert time.monotonic() < deadline, after
                time.sleep(0.1)
            assert after["priority"] > before["priority"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


def test_a_mark_made_while_the_round_recomputes_stays_for_the_next(
    rt, client, database_url: str, monkeypatch
):
    """A copy's view count changes while the round works the case out (PostgreSQL: the
    round's transaction holds no lock on the case until it writes): the round writes
    its priority but leaves the new mark, and the next round takes the case again."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock keeps every other writer out of the round")
    from datetime import timedelta

    from sqlalchemy import select, update

    from takedown.ids import utcnow
    from takedown.store.models import Case

    p = platform_headers(rt)
    r = client.post("/v1/registry/batch", content=_lines(), headers={**p, **NDJSON})
    assert r.status_code == 200, r.text
    number = client.post("/v1/reports", json=parent_report(["big0"])).json()["case_number"]
    first = utcnow() - timedelta(seconds=5)
    with rt.engine.begin() as conn:  # as refresh_priority_for_items marks a large case
        conn.execute(
            update(Case).where(Case.public_id == number).values(priority_stale_since=first)
        )
    later = utcnow()
    recompute = rt.cases._refresh_priority

    def meanwhile(s, case, now, *args, **kwargs):  # another transaction marks it again
        with rt.engine.begin() as conn:
            conn.execute(update(Case).where(Case.id == case.id).values(priority_stale_since=later))
        return recompute(s, case, now, *args, **kwargs)

    monkeypatch.setattr(rt.cases, "_refresh_priority", meanwhile)
    assert rt.cases.refresh_stale_priorities() == 1
    monkeypatch.setattr(rt.cases, "_refresh_priority", recompute)

    def mark() -> object:
        with rt.sessions() as s:
            return s.scalar(select(Case.priority_stale_since).where(Case.public_id == number))

    assert mark() == later
    assert rt.cases.refresh_stale_priorities() == 1
    assert mark() is None
    assert rt.cases.refresh_stale_priorities() == 0
