"""Observability from outside: Prometheus metrics at /metrics (behind a `metrics` key),
the request id in responses and JSON logs, and the readiness check that names what is
wrong. The last test runs a real `takedown serve --workers 2` and reads counts summed
over both workers."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, text

from takedown.config import Settings
from takedown.runtime import Runtime, open_runtime
from takedown.store.models import MasterKeyFingerprint
from tests.cases.helpers import parent_report
from tests.conftest import start_server

BLOCKED_MD5 = "b" * 32


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _key(rt: Runtime, scope: str) -> dict[str, str]:
    _, secret = rt.api_keys.create(f"test-{scope}", [scope], actor="test")
    return {"Authorization": f"Bearer {secret}"}


def _blocking_bank(client, auth: dict[str, str]) -> None:
    r = client.post("/v1/banks", json={"name": "obs", "match_action": "block"}, headers=auth)
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/banks/obs/entries",
        json={"entries": [{"signal_type": "md5", "value": BLOCKED_MD5}]},
        headers=auth,
    )
    assert r.status_code == 201, r.text


def test_metrics_need_a_key_with_the_metrics_scope(client, rt: Runtime):
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers=_key(rt, "screen"))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.get("/metrics", headers=_key(rt, "metrics"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    # The scraper's key opens nothing else.
    assert client.get("/v1/banks", headers=_key(rt, "metrics")).status_code == 403


def test_metrics_count_screenings_and_read_the_database(client, rt: Runtime, auth):
    metrics = _key(rt, "metrics")
    _blocking_bank(client, auth)
    before = _samples(client.get("/metrics", headers=metrics).text)
    for i in range(3):  # the fast path (api/fast_screen.py)
        r = client.post("/v1/screen/hashes", json={"md5": f"{i:032x}"}, headers=auth)
        assert r.json()["verdict"] == "allow"
    r = client.post("/v1/screen/hashes", json={"md5": BLOCKED_MD5}, headers=auth)
    assert r.json()["verdict"] == "block"
    # The serving process's poller reads new bank entries every 250 ms, starting one
    # interval after start-up: an app built and asked within that has not read yet.
    deadline = time.monotonic() + 120
    while rt.matcher.follower.last_read_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _samples(client.get("/metrics", headers=metrics).text)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("takedown_screenings_total", kind="hashes", verdict="allow") == 3
    assert delta("takedown_screenings_total", kind="hashes", verdict="block") == 1
    assert delta("takedown_screening_seconds_count", kind="hashes") == 4
    assert delta("takedown_screening_seconds_sum", kind="hashes") > 0
    # Scrape-time figures: this worker's index, the outbox, clocks, legal queues.
    assert _value(after, "takedown_index_entries") == rt.matcher.indexed
    assert _value(after, "takedown_index_last_read_age_seconds") >= 0
    assert _value(after, "takedown_index_snapshot_age_seconds") == -1  # none written
    for state in ("pending", "delivering", "dead_letter"):
        assert ("takedown_outbox_messages", (("state", state),)) in after
    assert ("takedown_outbox_oldest_pending_age_seconds", ()) in after
    assert _value(after, "takedown_case_priorities_waiting") == 0
    assert _value(after, "takedown_case_priority_oldest_wait_seconds") == 0
    for clock in ("decision", "take_it_down_48h"):
        for state in ("running", "overdue"):
            key = ("takedown_case_clocks", (("clock", clock), ("state", state)))
            assert after[key] == 0
    assert _value(after, "takedown_dsa_statements", state="pending") == 0


def test_metrics_count_open_cases_clocks_and_the_outbox(client, rt: Runtime):
    """A parent's report of a registered item opens a case with a decision clock and
    restricts the item at once (an action in the outbox, not delivered: no webhook is
    configured); the figures follow the database."""
    from takedown.services.registry.service import ItemInput

    metrics = _key(rt, "metrics")
    before = _samples(client.get("/metrics", headers=metrics).text)
    assert _value(before, "takedown_outbox_messages", state="pending") == 0
    assert _value(before, "takedown_outbox_oldest_pending_age_seconds") == 0
    rt.registry.upsert_item(ItemInput("obs-item", account_id="obs-account"), actor="test")
    assert client.post("/v1/reports", json=parent_report(["obs-item"])).status_code == 201
    samples = _samples(client.get("/metrics", headers=metrics).text)
    assert _value(samples, "takedown_outbox_messages", state="pending") >= 1
    assert _value(samples, "takedown_outbox_messages", state="dead_letter") == 0
    running = _value(samples, "takedown_case_clocks", clock="decision", state="running")
    assert running >= 1
    with rt.engine.begin() as conn:  # the clock runs out
        conn.execute(text("UPDATE cases SET decision_due_at = '2000-01-01 00:00:00'"))
    samples = _samples(client.get("/metrics", headers=metrics).text)
    assert _value(samples, "takedown_case_clocks", clock="decision", state="overdue") == running


def test_request_id_is_kept_when_safe_and_made_otherwise(client, auth):
    r = client.get("/v1/health", headers={"X-Request-ID": "lb-7f3a.2"})
    assert r.headers["x-request-id"] == "lb-7f3a.2"
    r = client.post(
        "/v1/screen/hashes", json={"md5": "a" * 32}, headers={**auth, "X-Request-ID": "fast-1"}
    )
    assert r.headers["x-request-id"] == "fast-1"  # the fast path too
    for bad in ("has space", "x" * 200, "semi;colon", ""):
        r = client.get("/v1/health", headers={"X-Request-ID": bad})
        made = r.headers["x-request-id"]
        assert made != bad and len(made) == 24 and made.isalnum()
    assert client.get("/v1/health").headers["x-request-id"] != made  # one per request


def test_json_log_lines_carry_the_request_id(client, rt: Runtime, auth, monkeypatch, capsys):
    """A line logged while a request is served (on the event loop, and in the thread
    pool) names that request; a line outside any request names none."""
    import logging

    from takedown.logs import JsonFormatter, RequestIdFilter
    from tests.conftest import standin_bytes

    log = logging.getLogger("takedown.test_observability")
    screen_hashes, screen_media = rt.screening.screen_hashes, rt.screening.screen_media

    def logged_hashes(**kw):
        log.warning("screening hashes")
        return screen_hashes(**kw)

    def logged_media(*a, **kw):
        log.warning("screening media")
        return screen_media(*a, **kw)

    monkeypatch.setattr(rt.screening, "screen_hashes", logged_hashes)
    monkeypatch.setattr(rt.screening, "screen_media", logged_media)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    try:
        r = client.post(
            "/v1/screen/hashes", json={"md5": "c" * 32}, headers={**auth, "X-Request-ID": "h-1"}
        )
        assert r.status_code == 200
        r = client.post(
            "/v1/screen",
            files={"file": ("upload.png", standin_bytes("camera.png"))},
            headers={**auth, "X-Request-ID": "m-2"},
        )
        assert r.status_code == 200, r.text
        log.warning("outside any request")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    assert [(x["message"], x["request_id"]) for x in lines] == [
        ("screening hashes", "h-1"),
        ("screening media", "m-2"),
        ("outside any request", None),
    ]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == log.name


def _ready(client) -> tuple[int, dict]:
    r = client.get("/v1/health/ready")
    return r.status_code, r.json()


def test_readiness_names_what_is_wrong(client, rt: Runtime):
    status, body = _ready(client)
    assert status == 200, body
    assert body == {
        "ready": True,
        "checks": {"database": "ok", "master_key": "ok", "bank_index": "ok"},
    }
    secret_places = [str(rt.settings.data_dir), rt.settings.resolved_database_url]

    # The schema is behind this version.
    with rt.engine.begin() as conn:
        (head,) = conn.execute(text("SELECT version_num FROM alembic_version")).one()
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_initial'"))
    try:
        status, body = _ready(client)
    finally:
        with rt.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert status == 503 and body["ready"] is False
    assert "0001_initial" in body["checks"]["database"]
    assert "takedown db upgrade" in body["checks"]["database"]
    assert body["checks"]["master_key"] != "ok"  # not checked without the database

    # The database was used with another master key.
    with rt.engine.begin() as conn:
        conn.execute(delete(MasterKeyFingerprint))
        conn.execute(
            MasterKeyFingerprint.__table__.insert().values(
                fingerprint="0123456789abcdef", first_used_at=_now()
            )
        )
    status, body = _ready(client)
    assert status == 503
    assert body["checks"]["database"] == "ok" and body["checks"]["bank_index"] == "ok"
    assert "fingerprint mismatch" in body["checks"]["master_key"]
    with rt.engine.begin() as conn:
        conn.execute(delete(MasterKeyFingerprint))

    # An unreadable bank index snapshot.
    snapshot = rt.settings.data_dir / "bank-index"
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "snapshot.json").write_text("not json")
    status, body = _ready(client)
    assert status == 503 and "unreadable" in body["checks"]["bank_index"]
    assert not any(p in json.dumps(body) for p in secret_places)
    shutil.rmtree(snapshot)
    assert _ready(client)[0] == 200


def test_readiness_names_a_stale_bank_index(client, rt: Runtime, monkeypatch):
    """A worker that stopped reading new bank entries (its poller died) is not ready;
    the limit is lowered below nothing rather than waiting a minute."""
    from takedown.runtime import observability

    rt.matcher.sync(force=True)  # read at least once (the poller may not have yet)
    monkeypatch.setattr(observability, "STALE_INDEX_S", -1.0)
    monkeypatch.setattr(observability, "STALE_INDEX_INTERVALS", -1)
    status, body = _ready(client)
    assert status == 503 and "stale" in body["checks"]["bank_index"]
    assert body["checks"]["database"] == "ok"


def test_readiness_when_the_database_cannot_be_reached(tmp_path: Path):
    """A runtime whose database went away (the file is gone): 503 naming the database."""
    from fastapi.testclient import TestClient

    from takedown.api.app import create_app

    database = tmp_path / "gone.sqlite3"
    settings = Settings(database_url=f"sqlite:///{database}", data_dir=tmp_path / "data")
    rt = open_runtime(settings)
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            assert _ready(client)[0] == 200
            rt.engine.dispose()
            database.unlink()
            database.mkdir()  # a directory where the file was: cannot be opened
            status, body = _ready(client)
    finally:
        rt.close()
    assert status == 503
    assert body["checks"]["database"].startswith("The database cannot be reached")
    assert str(tmp_path) not in json.dumps(body)


def _now():
    from takedown.ids import utcnow

    return utcnow()


# -- a real server with two workers --------------------------------------------------
def test_two_workers_sum_their_counts_and_log_json(sqlite_template: Path, tmp_path: Path):
    database = tmp_path / "takedown.sqlite3"
    shutil.copy(sqlite_template, database)
    data = tmp_path / "data"
    settings = Settings(database_url=f"sqlite:///{database}", data_dir=data)
    rt = open_runtime(settings, migrate=False)
    try:
        screen = _key(rt, "screen")
        metrics = _key(rt, "metrics")
    finally:
        rt.close()
    env = {
        "TAKEDOWN_DATABASE_URL": f"sqlite:///{database}",
        "TAKEDOWN_DATA_DIR": str(data),
        "TAKEDOWN_LOG_FORMAT": "json",
        "TAKEDOWN_ACCESS_LOG": "true",
    }
    stale = data / "metrics" / "counter_1.db"  # left by an earlier run: removed at start
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    server, port = start_server(env, workers=2)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(base + "/v1/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "no server"
            time.sleep(0.1)
        # A new connection each, spread over both workers' sockets -- once both are
        # up: a worker still starting takes no connection (the first one up takes
        # them all meanwhile), so screen until both have screened some.
        screenings = 0
        deadline = time.monotonic() + 300
        while True:
            r = httpx.post(
                base + "/v1/screen/hashes",
                json={"md5": f"{screenings:032x}"},
                headers={**screen, "X-Request-ID": f"obs-{screenings}"},
                timeout=120,
            )
            assert r.status_code == 200 and r.headers["x-request-id"] == f"obs-{screenings}"
            screenings += 1
            files = {p.name for p in (data / "metrics").glob("counter_*.db")}
            if screenings >= 24 and len(files) == 2:
                break  # both workers screened some
            assert time.monotonic() < deadline, files
        assert "counter_1.db" not in files
        for _ in range(4):  # whichever worker answers, it reports both workers' counts
            body = httpx.get(base + "/metrics", headers=metrics, timeout=30).text
            samples = _samples(body)
            total = _value(samples, "takedown_screenings_total", kind="hashes", verdict="allow")
            assert total == screenings
            count = _value(samples, "takedown_screening_seconds_count", kind="hashes")
            assert count == screenings
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["logger"] == "uvicorn.access" and x["request_id"] == "obs-3"]
    assert len(access) == 1, lines[-5:]
    assert access[0]["path"] == "/v1/screen/hashes" and access[0]["status"] == 200
    assert any(x["logger"] == "takedown.server" for x in lines)  # start-up lines too
    assert [x for x in stderr.splitlines() if x.strip() and not x.startswith("{")] == []
