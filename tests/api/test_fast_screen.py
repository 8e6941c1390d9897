"""The framework-free handler of POST /v1/screen/hashes (api/fast_screen.py) answers
exactly as the FastAPI route it stands in for: same statuses, codes and bodies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from takedown.api.app import create_app
from takedown.domain.hashlists import HashRecord
from takedown.runtime import Runtime

BANKED = "a" * 64
NEAR = "a" * 63 + "b"  # 1 bit away
MD5 = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def pair(rt: Runtime) -> Iterator[tuple[TestClient, TestClient]]:
    rt.banks.create_bank("fast", actor="t", match_action="block")
    rt.banks.add_hashes("fast", [HashRecord("pdq", BANKED), HashRecord("md5", MD5)], actor="t")
    fast_app, framework_app = create_app(rt), create_app(rt, fast_screening=False)
    assert fast_app.fast_screen is not None and framework_app.fast_screen is None
    with (
        TestClient(fast_app, raise_server_exceptions=False) as fast,
        TestClient(framework_app, raise_server_exceptions=False) as framework,
    ):
        yield fast, framework


def _keys(rt: Runtime) -> dict[str, str]:
    _, screen = rt.api_keys.create("screen", ["screen"], actor="t")
    _, other = rt.api_keys.create("banks", ["banks:read"], actor="t")
    return {"screen": screen, "other": other}


CASES: list[tuple[str, dict[str, str], object]] = [
    ("banked", {}, {"pdq": BANKED, "pdq_quality": 100, "content_ref": "u1"}),
    ("near, as a variant", {}, {"pdq": "0" * 64, "pdq_variants": [NEAR]}),
    ("clean", {}, {"pdq": "5" * 64}),
    ("md5", {}, {"md5": MD5.upper()}),
    ("no signals", {}, {"content_ref": "x"}),
    ("bad hash", {}, {"pdq": "xyz"}),
    ("bad quality", {}, {"pdq": BANKED, "pdq_quality": 101}),
    ("unknown field", {}, {"pdq": BANKED, "colour": "red"}),
    ("wrong type", {}, {"pdq": 12}),
    ("too many variants", {}, {"pdq": BANKED, "pdq_variants": [BANKED] * 8}),
    ("variants alone", {}, {"pdq_variants": [BANKED]}),
    ("not JSON", {}, b"{pdq: nope"),
    ("empty body", {}, b""),
    ("a list", {}, [BANKED]),
    ("text/plain", {"Content-Type": "text/plain"}, b'{"pdq": "' + BANKED.encode() + b'"}'),
    ("no key", {"Authorization": ""}, {"pdq": BANKED}),
    ("basic auth", {"Authorization": "Basic dXNlcjpwYXNz"}, {"pdq": BANKED}),
    ("unknown key", {"Authorization": "Bearer tdk_nope"}, {"pdq": BANKED}),
    ("not a key", {"Authorization": "Bearer hello"}, {"pdq": BANKED}),
    ("lacks permission", {"use": "other"}, {"pdq": BANKED}),
]


def _post(client: TestClient, key: str, headers: dict[str, str], body: object):
    sent = {"Authorization": f"Bearer {key}", **headers}
    sent.pop("use", None)
    if sent.get("Authorization") == "":
        del sent["Authorization"]
    if isinstance(body, bytes):
        sent.setdefault("Content-Type", "application/json")
        return client.post("/v1/screen/hashes", content=body, headers=sent)
    return client.post("/v1/screen/hashes", json=body, headers=sent)


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_the_fast_path_answers_as_the_framework_does(rt: Runtime, pair, name: str):
    fast, framework = pair
    keys = _keys(rt)
    _, headers, body = next(c for c in CASES if c[0] == name)
    key = keys[headers.get("use", "screen")]
    a, b = _post(fast, key, headers, body), _post(framework, key, headers, body)
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers["content-type"].startswith("application/json")
    got, expected = a.json(), b.json()
    if a.status_code == 200:
        assert got.pop("screening_id") != expected.pop("screening_id") or got["verdict"] == "allow"
        assert got == expected
    else:
        assert got["code"] == expected["code"] and got["message"]
        assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")


def test_a_matched_screening_is_kept_before_the_answer(rt: Runtime, pair):
    fast, _ = pair
    r = _post(fast, _keys(rt)["screen"], {}, {"pdq": BANKED, "content_ref": "upload-7"})
    assert r.status_code == 200 and r.json()["verdict"] == "block"
    screening = r.json()["screening_id"]
    from sqlalchemy import select

    from takedown.store.models import Screening

    with rt.sessions() as s:
        ref = s.scalar(select(Screening.content_ref).where(Screening.public_id == screening))
    assert ref == "upload-7"


def test_an_oversized_body_is_refused_before_it_is_read_whole(rt: Runtime, pair):
    fast, _ = pair
    body = b'{"content_ref": "' + b"x" * 70_000 + b'"}'
    r = _post(fast, _keys(rt)["screen"], {}, body)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_other_methods_and_addresses_go_to_the_framework(rt: Runtime, pair):
    fast, _ = pair
    auth = {"Authorization": f"Bearer {_keys(rt)['screen']}"}
    assert fast.get("/v1/screen/hashes", headers=auth).json()["code"] == "method_not_allowed"
    r = fast.post("/v1/screen/hashes/", json={}, headers=auth, follow_redirects=False)
    assert r.status_code == 307  # the framework's redirect to the address without "/"
    assert fast.get("/v1/health").status_code == 200
