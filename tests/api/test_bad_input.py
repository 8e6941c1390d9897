"""No 5xx from bad input, on SQLite and PostgreSQL alike: unknown filter values,
integers beyond 64 bits, NUL characters anywhere, nested junk in the report form, bodies
over their limit (declared or chunked), malformed JSON; and no answer carrying case or
reporter data is kept by a cache.

tests/api/test_fuzz_openapi.py looks for more of the same with schemathesis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from takedown.api.app import create_app
from takedown.api.limits import PUBLIC_BODY_LIMIT, NulScanner
from takedown.runtime import Runtime
from tests.cases.helpers import parent_report, platform_headers, user_headers
from tests.conftest import encode

NUL = "\x00"
INT64_MAX = 2**63 - 1
MD5 = "0123456789abcdef0123456789abcdef"
REPORT = {
    "category": "other",
    "reporter_role": "user",
    "urls": ["https://social.example/p/1"],
    "explanation": "Spam with a phishing link.",
    "good_faith": True,
    "reporter_name": "Ann Example",
    "reporter_email": "ann@example.org",
}
FORM_REPORT = {
    "category": "csam",
    "reporter_role": "parent_guardian",
    "urls": "https://social.example/p/clip-1",
    "explanation": "A video of my son at 13, made when he was blackmailed.",
    "good_faith": "yes",
}


def _assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    return body


# -- unknown filter values ------------------------------------------------------------------
@pytest.mark.parametrize("query", [{"state": "bogus"}, {"category": "bogus"}])
def test_unknown_filter_values_are_refused(client: TestClient, auth, query) -> None:
    body = _assert_error(
        client.get("/v1/cases", params=query, headers=auth), 422, "invalid_request"
    )
    assert body["details"]["errors"][0]["field"] == f"query.{next(iter(query))}"


def test_known_filter_values_still_filter(client: TestClient, auth) -> None:
    client.post("/v1/reports", json=REPORT)
    assert len(client.get("/v1/cases", params={"category": "other"}, headers=auth).json()) == 1
    assert client.get("/v1/cases", params={"category": "csam"}, headers=auth).json() == []
    assert client.get("/v1/cases", params={"state": "decided"}, headers=auth).json() == []
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "decided" in schemas["CaseState"]["enum"] and "csam" in schemas["Category"]["enum"]


# -- integers beyond 64 bits ----------------------------------------------------------------
def test_integers_beyond_64_bits_are_refused(client: TestClient, rt: Runtime, auth) -> None:
    p = platform_headers(rt)
    for too_big in (INT64_MAX + 1, 2**64, -(2**63) - 1):
        body = _assert_error(
            client.put("/v1/items/big", json={"view_count": too_big}, headers=p),
            422,
            "invalid_request",
        )
        assert body["details"]["errors"][0]["field"] == "view_count"
    r = client.put("/v1/items/big", json={"view_count": INT64_MAX}, headers=p)
    assert r.status_code == 200, r.text
    _assert_error(
        client.post("/v1/items/big/views", json={"view_count": INT64_MAX + 1}, headers=p),
        422,
        "invalid_request",
    )
    assert client.post("/v1/items/big/views", json={"view_count": 7}, headers=p).is_success
    _assert_error(
        client.post("/v1/banks", json={"name": "b", "pdq_threshold": 2**70}, headers=auth),
        422,
        "invalid_request",
    )
    _assert_error(
        client.post("/v1/screen/hashes", json={"md5": MD5, "pdq_quality": 2**64}, headers=auth),
        422,
        "invalid_request",
    )
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ViewsIn"]
    assert schema["properties"]["view_count"]["exclusiveMaximum"] == 2**63  # exact as a double


# -- NUL characters -------------------------------------------------------------------------
def _multipart(**fields: str) -> tuple[bytes, dict[str, str]]:
    """A multipart form without files (httpx sends multipart only with a file)."""
    parts = [
        f'--b0undary\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + "--b0undary--\r\n").encode()
    return body, {"content-type": "multipart/form-data; boundary=b0undary"}


PNG = encode(__import__("numpy").full((64, 64, 3), 120, dtype="uint8"))
_STATUS_FORM, _STATUS_FORM_HEADERS = _multipart(case_number="A" + NUL, token="t")

# (what, method, path, request keywords, needs the admin key). Public ones first: on
# PostgreSQL each of these was a 500 (a NUL cannot be stored in or compared with text).
NUL_REQUESTS: list[tuple[str, str, str, dict, bool]] = [
    ("report", "post", "/v1/reports", {"json": {**REPORT, "explanation": "a" + NUL}}, False),
    ("report's item", "post", "/v1/reports", {"json": {**REPORT, "item_ids": [NUL]}}, False),
    ("status", "post", "/v1/reports/status", {"json": {"case_number": NUL, "token": "t"}}, False),
    (
        "appeal",
        "post",
        "/v1/reports/appeal",
        {"json": {"case_number": "c", "token": NUL, "reason": "r"}},
        False,
    ),
    (
        "withdraw",
        "post",
        "/v1/reports/withdraw",
        {"json": {"case_number": NUL, "token": "t"}},
        False,
    ),
    ("sign-in", "post", "/v1/auth/token", {"json": {"username": NUL, "password": "p"}}, False),
    ("status form", "post", "/status", {"data": {"case_number": "A" + NUL, "token": "t"}}, False),
    (
        "status form, multipart",
        "post",
        "/status",
        {"content": _STATUS_FORM, "headers": _STATUS_FORM_HEADERS},
        False,
    ),
    ("report form", "post", "/report", {"data": {**FORM_REPORT, "explanation": NUL}}, False),
    (
        "console sign-in",
        "post",
        "/console/login",
        {"data": {"username": NUL, "password": "p"}},
        False,
    ),
    ("path", "get", "/v1/cases/%00", {}, True),
    ("path, item", "get", "/v1/items/a%00b", {}, True),
    ("path, bank", "get", "/v1/banks/b%00/entries", {}, True),
    ("query", "get", "/v1/cases", {"params": {"category": NUL}}, True),
    ("query, evidence", "get", "/v1/evidence", {"params": {"case_id": NUL}}, True),
    ("account", "put", "/v1/accounts/acc", {"json": {"handle": "h" + NUL}}, True),
    ("item", "put", "/v1/items/i", {"json": {"url": "https://x.example/" + NUL}}, True),
    ("bank", "post", "/v1/banks", {"json": {"name": "n", "description": NUL}}, True),
    ("user", "post", "/v1/users", {"json": {"username": NUL, "password": "p", "role": "x"}}, True),
    (
        "screen hashes",
        "post",
        "/v1/screen/hashes",
        {"json": {"md5": MD5, "content_ref": NUL}},
        True,
    ),
    (
        "screen form field",
        "post",
        "/v1/screen",
        {"files": {"file": ("a.png", PNG)}, "data": {"content_ref": "r" + NUL}},
        True,
    ),
    (
        "bank media form field",
        "post",
        "/v1/banks/b/media",
        {"files": {"file": ("a.png", PNG)}, "data": {"note": NUL}},
        True,
    ),
    (
        "import",
        "post",
        "/v1/banks/b/import?format=jsonl",
        {"content": f'{{"signal_type": "md5", "value": "{MD5}", "note": "\\u0000"}}\n'},
        True,
    ),
]


@pytest.mark.parametrize(
    "method,path,kwargs,keyed", [r[1:] for r in NUL_REQUESTS], ids=[r[0] for r in NUL_REQUESTS]
)
def test_nul_characters_are_refused_everywhere(
    client: TestClient, rt: Runtime, auth, method, path, kwargs, keyed
) -> None:
    rt.banks.create_bank("b", actor="test")
    kwargs = dict(kwargs)
    if keyed:
        kwargs["headers"] = {**kwargs.get("headers", {}), **auth}
    r = client.request(method.upper(), path, **kwargs)
    assert r.status_code == 422, r.text
    if r.headers["content-type"].startswith("text/html"):  # the public pages answer a page
        assert "NUL character" in r.text
    else:
        _assert_error(r, 422, "invalid_character")


@pytest.mark.parametrize(
    "body",
    [
        rb'{"a": "x\u0000"}',
        rb'{"a": "x\\u0000"}',
        rb'{"a": "\\\u0000", "b": 1}',
        rb'{"a": "\\\\u0000"}',
        rb'{"a": "\u00000 \u0001 %00"}',
        rb'{"a": "\ud800\udc00 \\", "b": "u0000"}',
    ],
)
def test_a_nul_is_found_wherever_the_chunks_of_a_json_body_break(body: bytes) -> None:
    data = json.loads(body)
    has_nul = any("\x00" in key + str(value) for key, value in data.items())
    for cut in range(len(body) + 1):
        for cut2 in range(cut, len(body) + 1):
            scanner = NulScanner(form_encoded=False)
            found = [scanner.feed(part) for part in (body[:cut], body[cut:cut2], body[cut2:])]
            assert any(found) == has_nul, (body, cut, cut2)


def test_a_json_escape_that_is_not_a_nul_is_kept(client: TestClient) -> None:
    # Sent as "a \\u0000 b": a backslash and the text "u0000", an odd explanation, no NUL.
    report = {**REPORT, "explanation": "a \\u0000 b"}
    assert client.post("/v1/reports", json=report).status_code == 201


# -- the public form's hashes ---------------------------------------------------------------
@pytest.mark.parametrize("depth", [2_000, 30_000])
def test_deeply_nested_hashes_on_the_report_form_are_refused(client: TestClient, depth) -> None:
    form = {**FORM_REPORT, "hashes": "[" * depth + "]" * depth}
    r = client.post("/report", data=form)
    assert r.status_code == 422, r.text[:300]
    assert "hashes could not be read" in r.text


# -- bodies over their limit ----------------------------------------------------------------
class Chunks:
    """A body sent in 64 KiB chunks (chunked transfer encoding: no length declared),
    counting how much of it the server asked for."""

    def __init__(self, total: int, first: bytes = b"", each: bytes = b"") -> None:
        self.total, self.first, self.each, self.sent = total, first, each, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = self.each + b"x" * (64 * 1024 - len(self.each))
        yield self.first
        self.sent = len(self.first)
        while self.sent < self.total:
            self.sent += len(chunk)
            yield chunk


def _stream(app, method: str, path: str, body: Chunks, headers: dict[str, str]) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.request(method, path, content=body, headers=headers)

    return asyncio.run(send())


def test_a_large_anonymous_report_is_refused_before_it_is_read(client: TestClient) -> None:
    big = b'{"explanation": "' + b"x" * (2 * PUBLIC_BODY_LIMIT) + b'"}'
    _assert_error(
        client.post("/v1/reports", content=big, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    body = Chunks(60 * 1024 * 1024, first=b'{"explanation": "')
    r = _stream(client.app, "POST", "/v1/reports", body, {"content-type": "application/json"})
    _assert_error(r, 413, "payload_too_large")
    assert r.headers["cache-control"] == "no-store"
    assert body.sent <= PUBLIC_BODY_LIMIT + 64 * 1024  # not one chunk more than the limit


def test_chunked_bodies_over_the_limit_are_413(rt: Runtime, auth) -> None:
    rt.settings.max_upload_bytes = rt.settings.max_video_bytes = 10_000
    rt.settings.max_import_bytes = 10_000
    app = create_app(rt)
    limit = 10_000 + 256 * 1024
    json_type = {**auth, "content-type": "application/json"}
    anonymous = {"content-type": "application/json"}
    multipart = {**auth, "content-type": "multipart/form-data; boundary=b"}
    file_part = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    for method, path, headers, total, first in [
        ("PUT", "/v1/items/x", json_type, 2 * limit, b'{"url": "'),  # JSON, authenticated
        ("POST", "/v1/banks", json_type, 2 * limit, b""),
        ("POST", "/v1/screen", multipart, 2 * limit, file_part),
        ("POST", "/v1/banks/b/import?format=text", auth, 300_000, b""),
        ("POST", "/v1/auth/token", anonymous, 2 * PUBLIC_BODY_LIMIT, b""),
        ("PUT", "/v1/items/x", anonymous, 2 * PUBLIC_BODY_LIMIT, b""),  # no credentials
    ]:
        body = Chunks(total, first)
        r = _stream(app, method, path, body, headers)
        _assert_error(r, 413, "payload_too_large")
        assert body.sent < total


def test_a_chunked_report_form_over_the_limit_is_a_413_page(client: TestClient) -> None:
    # Fields of 64 KiB each (one over the form's 256 KiB a field is a 400 of its own).
    body = Chunks(4 * PUBLIC_BODY_LIMIT, first=b"category=csam", each=b"&urls=")
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = _stream(client.app, "POST", "/report", body, headers)
    assert r.status_code == 413 and "too large" in r.text
    assert r.headers["content-type"].startswith("text/html")


# -- malformed JSON -------------------------------------------------------------------------
def test_json_that_is_not_utf8_is_a_documented_400(client: TestClient) -> None:
    r = client.post(
        "/v1/reports/status",
        content=b'{"case_number": "\xff", "token": "t"}',
        headers={"content-type": "application/json"},
    )
    body = _assert_error(r, 400, "bad_request")
    assert "UTF-8" in body["message"]
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "400" in operation["responses"], f"{method} {path}"


# -- caching --------------------------------------------------------------------------------
@pytest.fixture
def reported(client: TestClient, rt: Runtime) -> Iterator[dict]:
    p = platform_headers(rt)
    client.put("/v1/items/i1", json={"url": "https://social.example/p/i1"}, headers=p)
    yield client.post("/v1/reports", json=parent_report(["i1"])).json()


def test_answers_with_case_or_reporter_data_are_not_stored(
    client: TestClient, rt: Runtime, reported: dict
) -> None:
    legal = user_headers(rt, "lee", "legal")
    case, token = reported["case_number"], reported["status_token"]
    answers = [
        client.post("/v1/reports", json=REPORT),
        client.post("/v1/reports/status", json={"case_number": case, "token": token}),
        client.get("/v1/cases", headers=legal),
        client.get(f"/v1/cases/{case}", headers=legal),
        client.get(f"/v1/legal/cases/{case}/filings", headers=legal),
        client.get("/v1/cases/nope", headers=legal),  # errors too
        client.post("/v1/screen/hashes", json={"md5": MD5}, headers=legal),  # the fast path
    ]
    for r in answers:
        assert r.status_code < 500
        assert r.headers["cache-control"] == "no-store", r.request.url
