"""ThreatExchange and Tech Against Terrorism's TCAP, pulled through python-threatexchange's
clients against local servers that speak their protocols as those clients send and
parse them: paging, checkpoints, deletions (ThreatExchange's tombstones and indicators
every descriptor calls non-malicious; TCAP's deleted records), 429 and 5xx retried,
refused credentials (a clear error on the exchange, nothing applied); ThreatExchange's
reactions written back through the outbox. Both database backends."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from takedown.errors import ExchangeFailed, InvalidRequest
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.store.models import BankEntry, ExchangeEntry, ExchangeFeedback
from tests.cases.helpers import user_headers
from tests.exchanges.tat_server import PASSWORD as TAT_PASSWORD
from tests.exchanges.tat_server import USER as TAT_USER
from tests.exchanges.tat_server import TatServer
from tests.exchanges.threatexchange_server import GROUP, OTHER_APP, TOKEN, ThreatExchangeServer


def md5(n: int) -> str:
    return hashlib.md5(f"stand-in {n}".encode()).hexdigest()


def pdq(n: int) -> str:
    return hashlib.sha256(f"stand-in pdq {n}".encode()).hexdigest()


@pytest.fixture
def te() -> Iterator[ThreatExchangeServer]:
    server = ThreatExchangeServer(page_size=3).start()
    yield server
    server.stop()


@pytest.fixture
def tat() -> Iterator[TatServer]:
    server = TatServer(page_size=3).start()
    yield server
    server.stop()


def creds_file(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def add_te(rt: Runtime, tmp_path: Path, url: str, name: str = "gifct", token: str = TOKEN) -> None:
    rt.exchanges.add(
        name,
        type="threatexchange",
        bank="terror",
        actor="t",
        base_url=url,
        privacy_group=GROUP,
        credentials_file=creds_file(tmp_path, token, f"{name}.token"),
    )


def add_tat(rt: Runtime, tmp_path: Path, url: str, name: str = "tcap", pw: str = TAT_PASSWORD):
    rt.exchanges.add(
        name,
        type="tat",
        bank="terror",
        actor="t",
        base_url=url,
        credentials_file=creds_file(tmp_path, f"{TAT_USER}:{pw}", f"{name}.creds"),
    )


def entries(rt: Runtime) -> dict[str, bool]:
    with rt.sessions() as s:
        return {v: e for v, e in s.execute(select(BankEntry.value, BankEntry.enabled))}


def test_threatexchange_pull_paging_deletions_and_provenance(rt, tmp_path, te):
    base = int(time.time()) - 3600
    for i in range(5):
        te.put(100 + i, "HASH_PDQ", pdq(i), base + i, tags=("gifct", "terrorism"))
    te.put(200, "HASH_VIDEO_MD5", md5(1), base + 5)
    te.put(300, "URI", "https://example.org/x", base + 6)  # not a type taken here
    te.put(400, "HASH_MD5", md5(2), base + 7, status="NON_MALICIOUS")  # nobody vouches
    rt.banks.create_bank("terror", actor="t")
    add_te(rt, tmp_path, te.url)
    result = rt.exchanges.sync("gifct", actor="t")
    assert (result.pages, result.added, result.rejected, result.complete) == (3, 6, 1, True)
    assert md5(2) not in entries(rt)
    assert rt.exchanges.get("gifct").checkpoint == {"update_time": base + 7}
    # The library's request: its fields (plus the indicator's id), no start at first.
    first = te.requests[0][1]
    assert "threat_updates" in first and "start_time" not in first
    assert "descriptors%7Bid%2Creactions%2Cowner%7Bid%7D%2Ctags%2Cstatus%7D" in first
    # Provenance: upstream id (the indicator's), its tags and owners, first/last seen.
    with rt.sessions() as s:
        row = s.scalars(select(ExchangeEntry).where(ExchangeEntry.upstream_id == "102")).one()
        labels = json.loads(row.labels)
        assert labels["tags"] == ["gifct", "terrorism"] and labels["owners"] == [OTHER_APP]
        assert labels["type"] == "HASH_PDQ" and labels["positive"] == 1
        entry = s.get_one(BankEntry, row.entry_id)
        assert (entry.source, entry.source_id, entry.added_by) == (
            "threatexchange",
            "102",
            "exchange:gifct",
        )
    # Incremental: from the checkpoint; a tombstone and an indicator now marked
    # non-malicious disable their entries in the same sync; a new one is added.
    cp = base + 7
    te.delete(100, cp + 1)
    te.put(101, "HASH_PDQ", pdq(1), cp + 2, status="NON_MALICIOUS")
    te.put(500, "HASH_PDQ", pdq(50), cp + 3)
    result = rt.exchanges.sync("gifct", actor="t")
    assert f"start_time={cp}" in te.requests[-1][1]
    assert (result.added, result.disabled) == (1, 2)
    values = entries(rt)
    assert values[pdq(0)] is False and values[pdq(1)] is False and values[pdq(50)] is True
    assert values[pdq(2)] is True
    # Brought back by a new descriptor: enabled again.
    te.put(101, "HASH_PDQ", pdq(1), cp + 4)
    assert rt.exchanges.sync("gifct", actor="t").enabled_again == 1
    assert TOKEN not in json.dumps(rt.exchanges.get("gifct").checkpoint)


def test_threatexchange_retries_and_refused_token(rt, tmp_path, te):
    base = int(time.time()) - 3600
    for i in range(4):
        te.put(100 + i, "HASH_PDQ", pdq(i), base + i)
    rt.banks.create_bank("terror", actor="t")
    wrong = "1234567890|not-the-right-secret-000000"
    add_te(rt, tmp_path, te.url, name="wrong", token=wrong)
    with pytest.raises(ExchangeFailed) as failed:
        rt.exchanges.sync("wrong", actor="t")
    assert failed.value.code == "exchange_credentials_refused" and failed.value.status == 409
    assert "OAuthException" in failed.value.message
    view = rt.exchanges.get("wrong")
    assert view.checkpoint == {} and view.live_entries == 0 and view.last_error
    assert "not-the-right" not in failed.value.message + view.last_error
    # 429 and 503 retried by the client's session (the library's own GET skipped it).
    add_te(rt, tmp_path, te.url)
    te.fail_next(429)
    te.fail_next(503)
    assert rt.exchanges.sync("gifct", actor="t").added == 4
    # A 5xx that outlasts the retries: an error on the exchange, the next sync goes on.
    te.put(200, "HASH_PDQ", pdq(20), base + 100)
    te.fail_next(500, 10)
    with pytest.raises(ExchangeFailed) as failed:
        rt.exchanges.sync("gifct", actor="t")
    te._fail.clear()
    assert "500" in failed.value.message and rt.exchanges.get("gifct").last_error
    assert rt.exchanges.sync("gifct", actor="t").added == 1
    assert rt.exchanges.get("gifct").last_error is None
    # Mistakes at add: no privacy group, a group for another type, a malformed token.
    for kw, code in [
        ({"privacy_group": None}, "invalid_exchange_privacy_group"),
        ({"type": "tat", "credentials_file": creds_file(tmp_path, "u:p", "u")},
         "invalid_exchange_privacy_group"),
        ({"credentials_file": creds_file(tmp_path, "not a token", "bad")},
         "invalid_exchange_credentials"),
    ]:  # fmt: skip
        args = {"type": "threatexchange", "bank": "terror", "actor": "t", "privacy_group": GROUP,
                "credentials_file": creds_file(tmp_path, TOKEN, "good")}  # fmt: skip
        args.update(kw)
        with pytest.raises(InvalidRequest) as refused:
            rt.exchanges.add("x", **args)  # type: ignore[arg-type]
        assert refused.value.code == code
        assert "not a token" not in refused.value.message


def test_threatexchange_reactions_through_the_outbox(rt, client, tmp_path, te):
    base = int(time.time()) - 3600
    te.put(100, "HASH_PDQ", pdq(1), base)
    te.put(200, "HASH_MD5", md5(1), base + 1)
    rt.banks.create_bank("terror", actor="t")
    add_te(rt, tmp_path, te.url)
    rt.exchanges.sync("gifct", actor="t")
    mod = user_headers(rt, "mod", "moderator")

    def entry(value: str) -> str:
        with rt.sessions() as s:
            return s.scalars(select(BankEntry.public_id).where(BankEntry.value == value)).one()

    r = client.post(f"/v1/entries/{entry(pdq(1))}/opinion", json={"confirmed": True}, headers=mod)
    assert r.status_code == 200 and r.json() == {"queued": 1}
    r = client.post(f"/v1/entries/{entry(md5(1))}/opinion", json={"confirmed": False}, headers=mod)
    assert r.json() == {"queued": 1}
    # The first reaction is answered 503 (a POST: the client never retries it); the
    # outbox tries again later.
    te.fail_next_post(503)
    assert rt.exchanges.send_due() == 1
    with rt.sessions() as s:
        rows = list(s.scalars(select(ExchangeFeedback).order_by(ExchangeFeedback.id)))
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("sent", 1)]
    assert "FacebookApiException" in (rows[0].last_error or "")
    assert rt.exchanges.send_due(now=utcnow() + timedelta(minutes=1)) == 1
    # HELPFUL on the sharer's descriptor of the confirmed one, DISAGREE_WITH_TAGS on the
    # other's; the library reads them back as our opinions at the next sync.
    assert sorted(te.reactions) == [(1001, "HELPFUL"), (2001, "DISAGREE_WITH_TAGS")]
    posts = [p for m, p in te.requests if m == "POST"]
    assert all("reactions=" in p for p in posts)
    te.put(100, "HASH_PDQ", pdq(1), base + 10)  # a new update keeps our reaction
    te.indicators[100]["descriptors"][0]["reactions"] = {"HELPFUL": {"1234567890"}}  # type: ignore[index]
    rt.exchanges.sync("gifct", actor="t")
    with rt.sessions() as s:
        row = s.scalars(select(ExchangeEntry).where(ExchangeEntry.upstream_id == "100")).one()
    assert 1234567890 in json.loads(row.labels)["owners"]
    assert TOKEN.split("|")[1] not in " ".join(r.last_error or "" for r in rows)


def test_tat_pull_paging_deletions_and_logins(rt, client, tmp_path, tat):
    base = time.time() - 3600
    for i in range(5):
        tat.put(10 + i, "PDQ", pdq(i), base + i, ideology="islamist")
    tat.put(20, "MD5", md5(1), base + 5, file_type="mp4")
    tat.put(21, "MD5", md5(2), base + 6, file_type="png")  # any file's MD5 is taken here
    tat.put(22, "SHA1", "a" * 40, base + 7)  # not a type taken here
    tat.put(23, "PDQ", pdq(9), base + 8, deleted=True)  # never live here
    rt.banks.create_bank("terror", actor="t")
    add_tat(rt, tmp_path, tat.url)
    tat.token_uses = 2  # the token expires after two pages: one login more, mid-sync
    result = rt.exchanges.sync("tcap", actor="t")
    assert (result.pages, result.added, result.rejected, result.complete) == (3, 7, 1, True)
    assert pdq(9) not in entries(rt) and tat.logins == 2  # not one a page
    cp = rt.exchanges.get("tcap").checkpoint
    assert cp == {"after": f"{base + 8},23"}
    # The next page's query as the server's next link gave it (offset and limit kept).
    gets = [p for m, p in tat.requests if m == "GET"]
    assert "offset=3" in gets[1] and "limit=3" in gets[1]
    with rt.sessions() as s:
        row = s.scalars(select(ExchangeEntry).where(ExchangeEntry.upstream_id == "12")).one()
        labels = json.loads(row.labels)
        assert labels["classification"] == "islamist" and labels["algorithm"] == "PDQ"
        assert s.get_one(BankEntry, row.entry_id).category == "islamist"
    # Incremental after the checkpoint: a deletion disables in the same sync; a 429 on
    # the login (a POST the client never retries) is retried here.
    tat.delete(11, base + 20)
    tat.put(30, "PDQ", pdq(30), base + 21)
    tat.fail_next(429)
    asked = len(tat.requests)
    result = rt.exchanges.sync("tcap", actor="t")
    assert (result.added, result.disabled) == (1, 1)
    assert entries(rt)[pdq(1)] is False and entries(rt)[pdq(30)] is True
    gets = [p for m, p in tat.requests[asked:] if m == "GET"]
    assert urlencode({"after": cp["after"]}) in gets[0] and tat.logins == 3
    # TCAP takes no opinions: nothing is queued for it.
    mod = user_headers(rt, "mod", "moderator")
    with rt.sessions() as s:
        public = s.scalars(select(BankEntry.public_id).where(BankEntry.value == pdq(2))).one()
    r = client.post(f"/v1/entries/{public}/opinion", json={"confirmed": True}, headers=mod)
    assert r.status_code == 422 and r.json()["code"] == "entry_not_from_exchange"


def test_tat_refused_credentials_and_failures(rt, tmp_path, tat):
    tat.put(1, "PDQ", pdq(1), time.time() - 60)
    rt.banks.create_bank("terror", actor="t")
    add_tat(rt, tmp_path, tat.url, name="wrong", pw="not-the-password")
    with pytest.raises(ExchangeFailed) as failed:
        rt.exchanges.sync("wrong", actor="t")
    assert failed.value.code == "exchange_credentials_refused"
    assert "400" in failed.value.message and "not-the-password" not in failed.value.message
    view = rt.exchanges.get("wrong")
    assert view.checkpoint == {} and view.live_entries == 0 and view.last_error
    add_tat(rt, tmp_path, tat.url)
    tat.fail_next(503, 10)  # the login outlasts its retries
    with pytest.raises(ExchangeFailed) as failed:
        rt.exchanges.sync("tcap", actor="t")
    tat._fail.clear()
    assert failed.value.code == "exchange_sync_failed" and "503" in failed.value.message
    assert rt.exchanges.sync("tcap", actor="t").added == 1
    # 429 and 503 on the list are retried by the client's session.
    tat.put(2, "PDQ", pdq(2), time.time() - 30)
    tat.fail_next_get(429)
    tat.fail_next_get(503)
    assert rt.exchanges.sync("tcap", actor="t").added == 1
    assert not tat._fail_gets


def test_the_access_token_never_reaches_the_logs(rt, tmp_path, te, caplog):
    """The Graph API takes the token in every URL; urllib3 logs URLs (each request at
    debug level, each retry of a broken connection as a warning)."""
    import logging
    import socket

    te.put(100, "HASH_PDQ", pdq(1), int(time.time()) - 60)
    rt.banks.create_bank("terror", actor="t")
    add_te(rt, tmp_path, te.url)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v26.0"
    add_te(rt, tmp_path, closed, name="down")
    secret = TOKEN.split("|")[1]
    with caplog.at_level(logging.DEBUG):
        assert rt.exchanges.sync("gifct", actor="t").added == 1
        with pytest.raises(ExchangeFailed) as failed:
            rt.exchanges.sync("down", actor="t")
    assert "could not be reached" in failed.value.message
    text = caplog.text
    assert "access_token=***" in text and "Retrying" in text  # the lines are there…
    assert secret not in text and "%7C" + secret not in text  # …without the token
    assert secret not in (rt.exchanges.get("down").last_error or "")


def test_case_decisions_react_on_threatexchange_and_leave_tcap_alone(
    rt, client, auth, tmp_path, te, tat
):
    """Items matching a ThreatExchange entry and a TCAP entry open cases; a violation
    reacts HELPFUL on the sharer's descriptor; TCAP, which takes no opinions, gets
    nothing queued. Through the HTTP API."""
    from tests.cases.helpers import platform_headers
    from tests.exchanges.test_case_write_back import _decide, _register

    base = int(time.time()) - 3600
    te.put(100, "HASH_MD5", md5(1), base)
    tat.put(10, "MD5", md5(2), base)
    r = client.post("/v1/banks", headers=auth, json={"name": "terror", "match_action": "review"})
    assert r.status_code == 201, r.text
    for body in (
        {"name": "gifct", "type": "threatexchange", "privacy_group": GROUP, "base_url": te.url,
         "credentials_file": creds_file(tmp_path, TOKEN, "te")},
        {"name": "tcap", "type": "tat", "base_url": tat.url,
         "credentials_file": creds_file(tmp_path, f"{TAT_USER}:{TAT_PASSWORD}", "tat")},
    ):  # fmt: skip
        assert client.post(
            "/v1/exchanges", headers=auth, json={**body, "bank": "terror"}
        ).is_success
        assert client.post(f"/v1/exchanges/{body['name']}/sync", headers=auth).is_success
    p = platform_headers(rt)
    (case_te,) = _register(client, p, "item-a", md5=md5(1))["cases"]
    (case_tat,) = _register(client, p, "item-b", md5=md5(2))["cases"]
    spec = user_headers(rt, "spec", "child_safety_specialist")
    _decide(client, case_te, spec, "violation")
    _decide(client, case_tat, spec, "violation")
    with rt.sessions() as s:
        rows = list(s.scalars(select(ExchangeFeedback)))
    assert [(r.upstream_id, r.positive) for r in rows] == [("100", True)]
    assert rt.exchanges.send_due(now=utcnow() + timedelta(seconds=1)) == 1
    assert te.reactions == [(1001, "HELPFUL")]
