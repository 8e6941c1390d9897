"""What an API caller may name when adding an exchange: credentials only from the
exchange-credentials directory or TAKEDOWN_EXCHANGE_CREDENTIALS_… variables, and base
URLs only of the exchange's own or allowed by the operator. Otherwise a caller with
banks:write could make the server send its own secrets (the database URL's variable
parses as NCMEC's user:password) to a host of the caller's choosing. The CLI, run on the
server by its operator, may name any. Through the HTTP API, on both backends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from takedown.config import Settings
from tests.exchanges.ncmec_hash_server import PASSWORD, USER
from tests.exchanges.test_pull import md5, ncmec  # noqa: F401


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request, ncmec) -> Settings:  # noqa: F811
    """The defaults (no other base URL allowed, credentials in the data directory's
    exchange-credentials), or with the local server's address allowed by the operator."""
    allow = request.node.get_closest_marker("allow_local_server") is not None
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        exchange_base_urls=ncmec.url if allow else "",
    )


def _body(**kw: object) -> dict[str, object]:
    return {"name": "ncmec", "type": "ncmec", "bank": "csam", **kw}


def _refused(client, auth, body: dict[str, object], code: str) -> None:
    r = client.post("/v1/exchanges", json=body, headers=auth)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code, r.text
    assert client.get("/v1/exchanges", headers=auth).json() == []  # nothing kept


def test_api_names_only_what_the_operator_allowed(rt, client, auth, tmp_path, monkeypatch, ncmec):  # noqa: F811
    assert client.post("/v1/banks", json={"name": "csam"}, headers=auth).status_code == 201
    allowed = rt.settings.exchange_credentials_directory
    allowed.mkdir(parents=True)
    (allowed / "ncmec.creds").write_text(f"{USER}:{PASSWORD}\n")
    outside = tmp_path / "elsewhere.creds"
    outside.write_text(f"{USER}:{PASSWORD}\n")
    (allowed / "link.creds").symlink_to(outside)
    monkeypatch.setenv("TAKEDOWN_DATABASE_PASSWORDLIKE", "user:secret")
    monkeypatch.setenv("TAKEDOWN_EXCHANGE_CREDENTIALS_NCMEC", f"{USER}:{PASSWORD}")

    # Files outside the directory, by absolute path, by '..' or through a link: refused.
    for path in (str(outside), "../elsewhere.creds", "link.creds", str(allowed)):
        _refused(client, auth, _body(credentials_file=path), "credentials_source_not_allowed")
    # The server's own variables: refused; any host not the exchange's own: refused.
    _refused(
        client, auth, _body(credentials_env="TAKEDOWN_DATABASE_PASSWORDLIKE"),
        "credentials_source_not_allowed",
    )  # fmt: skip
    for url in (
        ncmec.url,
        "https://report.cybertip.org.evil.example/hashsharing",
        "https://evil.example/hashsharing",
        "http://report.cybertip.org/hashsharing",
    ):
        _refused(
            client, auth, _body(credentials_file="ncmec.creds", base_url=url),
            "exchange_url_not_allowed",
        )  # fmt: skip

    # Inside the directory (by name or by its absolute path), an exchange-credentials
    # variable, NCMEC's own environments: taken.
    r = client.post("/v1/exchanges", json=_body(credentials_file="ncmec.creds"), headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["credentials"] == f"file:{(allowed / 'ncmec.creds').resolve()}"
    r = client.post(
        "/v1/exchanges",
        json=_body(
            name="ncmec-npo",
            credentials_env="TAKEDOWN_EXCHANGE_CREDENTIALS_NCMEC",
            base_url="https://hashsharing.ncmec.org/npo",
        ),
        headers=auth,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/v1/exchanges",
        json=_body(
            name="ncmec-test",
            credentials_file=str(allowed / "ncmec.creds"),
            base_url="https://exttest.cybertip.org/hashsharing",
        ),
        headers=auth,
    )
    assert r.status_code == 201, r.text


@pytest.mark.allow_local_server
def test_the_operator_allows_a_host(rt, client, auth, ncmec):  # noqa: F811
    """With the local server's address in TAKEDOWN_EXCHANGE_BASE_URLS the API may use
    it (that port only), and the exchange syncs from it."""
    ncmec.add(1, "e1", {"md5": md5(1)}, int(time.time()) - 3600)
    assert client.post("/v1/banks", json={"name": "csam"}, headers=auth).status_code == 201
    creds = rt.settings.exchange_credentials_directory
    creds.mkdir(parents=True)
    (creds / "n").write_text(f"{USER}:{PASSWORD}\n")
    host, port = ncmec.url.removeprefix("http://").split(":")
    other_port = f"http://{host}:{int(port) + 1}"
    _refused(
        client, auth, _body(credentials_file="n", base_url=other_port), "exchange_url_not_allowed"
    )
    r = client.post(
        "/v1/exchanges", json=_body(credentials_file="n", base_url=ncmec.url), headers=auth
    )
    assert r.status_code == 201, r.text
    r = client.post("/v1/exchanges/ncmec/sync", headers=auth)
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
