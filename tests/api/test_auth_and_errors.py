"""Authentication, scopes, and one test per error code the API can return."""

from __future__ import annotations

import pytest

from takedown.runtime import Runtime
from tests.conftest import encode


def _key(rt: Runtime, *scopes: str) -> dict[str, str]:
    _, secret = rt.api_keys.create("k-" + "-".join(scopes), list(scopes), actor="test")
    return {"Authorization": f"Bearer {secret}"}


def _assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    return body


def test_health_needs_no_key(client):
    r = client.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize(
    "path,method",
    [
        ("/v1/banks", "get"),
        ("/v1/banks", "post"),
        ("/v1/screen/hashes", "post"),
        ("/v1/screen", "post"),
        ("/v1/banks/x/entries", "get"),
        ("/v1/entries/x", "patch"),
        ("/v1/banks/x/export", "get"),
        ("/v1/banks/x/import", "post"),
    ],
)
def test_every_endpoint_needs_a_key(client, path, method):
    r = getattr(client, method)(path)
    body = _assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in body["message"]


def test_unknown_and_revoked_keys_are_refused(client, rt):
    _assert_error(
        client.get("/v1/banks", headers={"Authorization": "Bearer tdk_nope"}),
        401,
        "invalid_api_key",
    )
    _assert_error(
        client.get("/v1/banks", headers={"Authorization": "Bearer other"}), 401, "invalid_api_key"
    )
    view, secret = rt.api_keys.create("gone", ["admin"], actor="test")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/banks", headers=headers).status_code == 200
    rt.api_keys.revoke(view.id)
    _assert_error(client.get("/v1/banks", headers=headers), 401, "invalid_api_key")


def test_a_key_revoked_by_another_process_stops_working_within_the_cache_time(rt):
    from takedown.errors import Unauthenticated
    from takedown.services.identity.apikeys import ApiKeyService

    now = [100.0]
    worker = ApiKeyService(rt.sessions, cache_s=1.0, clock=lambda: now[0])
    view, secret = rt.api_keys.create("platform", ["screen"], actor="test")
    assert worker.authenticate(secret).id == view.id
    rt.api_keys.revoke(view.id)  # another process (runtime) revokes it
    now[0] += 0.5
    assert worker.authenticate(secret).id == view.id  # still cached: at most 1 s
    now[0] += 0.6
    with pytest.raises(Unauthenticated):
        worker.authenticate(secret)
    worker.close()


def test_scopes_are_enforced(client, rt):
    screen_only = _key(rt, "screen")
    reader = _key(rt, "banks:read")
    _assert_error(client.get("/v1/banks", headers=screen_only), 403, "forbidden")
    _assert_error(client.post("/v1/banks", json={"name": "x"}, headers=reader), 403, "forbidden")
    _assert_error(
        client.post("/v1/screen/hashes", json={"md5": "a" * 32}, headers=reader), 403, "forbidden"
    )
    assert (
        client.post("/v1/screen/hashes", json={"md5": "a" * 32}, headers=screen_only).status_code
        == 200
    )
    assert client.get("/v1/banks", headers=reader).status_code == 200


def test_keys_are_stored_hashed(rt):
    from sqlalchemy import select

    from takedown.store.models import ApiKey

    _, secret = rt.api_keys.create("k", ["screen"], actor="test")
    with rt.sessions() as s:
        row = s.scalars(select(ApiKey)).one()
    assert secret not in (row.key_hash, row.prefix) and row.prefix == secret[:12]


# -- one test per error code -------------------------------------------------------------
def test_not_found_codes(client, auth):
    _assert_error(client.get("/v1/banks/nope", headers=auth), 404, "bank_not_found")
    _assert_error(client.get("/v1/entries/nope", headers=auth), 404, "entry_not_found")
    _assert_error(client.get("/v1/nothing-here", headers=auth), 404, "not_found")


def test_method_not_allowed(client, auth):
    r = client.delete("/v1/banks", headers=auth)
    body = _assert_error(r, 405, "method_not_allowed")
    # Every method of the address, not only those of the first route that matched it.
    assert r.headers["allow"] == "GET, POST" and "use GET, POST" in body["message"]
    # A POST-only address says so, with or without a key.
    for headers in (auth, {}):
        r = client.get("/v1/screen", headers=headers)
        body = _assert_error(r, 405, "method_not_allowed")
        assert r.headers["allow"] == "POST"
        assert body["message"] == "This address does not accept GET; use POST."


def test_bank_validation_codes(client, auth):
    _assert_error(
        client.post("/v1/banks", json={"name": "Bad Name!"}, headers=auth), 422, "invalid_bank_name"
    )
    _assert_error(
        client.post("/v1/banks", json={"name": "b", "pdq_threshold": 300}, headers=auth),
        422,
        "invalid_threshold",
    )
    _assert_error(
        client.post("/v1/banks", json={"name": "b", "pdq_quality_floor": 101}, headers=auth),
        422,
        "invalid_quality_floor",
    )
    _assert_error(
        client.post("/v1/banks", json={"name": "b", "match_action": "delete"}, headers=auth),
        422,
        "invalid_match_action",
    )
    _assert_error(
        client.post("/v1/banks", json={"name": "b", "source": "rumour"}, headers=auth),
        422,
        "invalid_bank_source",
    )
    client.post("/v1/banks", json={"name": "b"}, headers=auth)
    _assert_error(client.post("/v1/banks", json={"name": "b"}, headers=auth), 409, "bank_exists")
    _assert_error(
        client.patch("/v1/banks/b", json={"enabled": False}, headers=auth), 422, "reason_required"
    )


def test_request_shape_errors(client, auth):
    body = _assert_error(
        client.post("/v1/banks", json={"nam": "x"}, headers=auth), 422, "invalid_request"
    )
    assert body["details"]["errors"]
    _assert_error(
        client.post(
            "/v1/banks", content=b"{not json", headers={**auth, "content-type": "application/json"}
        ),
        422,
        "invalid_request",
    )


def test_entry_and_hash_codes(client, auth):
    client.post("/v1/banks", json={"name": "b"}, headers=auth)
    _assert_error(
        client.post(
            "/v1/banks/b/entries",
            headers=auth,
            json={"entries": [{"signal_type": "md5", "value": "123"}]},
        ),
        422,
        "invalid_hash",
    )
    r = client.post(
        "/v1/banks/b/entries",
        headers=auth,
        json={"entries": [{"signal_type": "md5", "value": "a" * 32}]},
    )
    entry = r.json()["entries"][0]["id"]
    _assert_error(
        client.patch(f"/v1/entries/{entry}", json={"enabled": False}, headers=auth),
        422,
        "reason_required",
    )
    _assert_error(
        client.get("/v1/banks/b/entries", params={"limit": 0}, headers=auth), 422, "invalid_request"
    )


def test_import_codes(client, auth):
    client.post("/v1/banks", json={"name": "b"}, headers=auth)
    _assert_error(
        client.post("/v1/banks/b/import", params={"format": "xml"}, content=b"x", headers=auth),
        422,
        "unknown_format",
    )
    _assert_error(
        client.post(
            "/v1/banks/b/import",
            params={"format": "text"},
            content=b"\xff\xfebad",  # not UTF-8 (a NUL would be invalid_character)
            headers=auth,
        ),
        422,
        "invalid_encoding",
    )
    _assert_error(
        client.post(
            "/v1/banks/b/import", params={"format": "csv"}, content=b"pdq,zz\n", headers=auth
        ),
        422,
        "import_rejected",
    )
    _assert_error(
        client.post(
            "/v1/banks/b/import",
            content=b"x",
            params={"format": "text", "signal_type": "sha1"},
            headers=auth,
        ),
        422,
        "unknown_signal_type",
    )
    _assert_error(
        client.post(
            "/v1/banks/b/import",
            params={"format": "csv"},
            content=b"signal_type,signal,signal\npdq,red,blue\n",
            headers=auth,
        ),
        422,
        "invalid_header",
    )
    client.post(
        "/v1/banks/b/entries",
        headers=auth,
        json={
            "entries": [
                {"signal_type": "md5", "value": "c" * 32},
                {"signal_type": "pdq", "value": "c" * 64},
            ]
        },
    )
    _assert_error(
        client.get("/v1/banks/b/export", params={"format": "text"}, headers=auth),
        422,
        "mixed_signal_types",
    )
    _assert_error(
        client.get("/v1/banks/b/export", params={"format": "xml"}, headers=auth),
        422,
        "unknown_format",
    )


def test_screening_codes(client, auth):
    _assert_error(client.post("/v1/screen/hashes", json={}, headers=auth), 422, "no_signals")
    _assert_error(
        client.post("/v1/screen/hashes", json={"pdq": "1" * 64, "pdq_quality": 101}, headers=auth),
        422,
        "invalid_quality",
    )
    _assert_error(
        client.post("/v1/screen/hashes", json={"pdq": "zz"}, headers=auth), 422, "invalid_hash"
    )
    _assert_error(client.post("/v1/screen", headers=auth), 422, "invalid_request")


def test_media_error_codes(client, auth, rt):
    files = lambda data: {"file": ("upload.bin", data)}  # noqa: E731
    _assert_error(client.post("/v1/screen", files=files(b""), headers=auth), 422, "media_empty")
    _assert_error(
        client.post("/v1/screen", files=files(b"hello, this is text\n" * 5), headers=auth),
        415,
        "media_unsupported_type",
    )
    png = encode(__import__("numpy").zeros((40, 40, 3), dtype="uint8"))
    _assert_error(
        client.post("/v1/screen", files=files(png[: len(png) // 2]), headers=auth),
        422,
        "media_corrupt",
    )


def test_oversized_uploads_are_refused_before_hashing(rt, auth):
    from fastapi.testclient import TestClient

    from takedown.api.app import create_app

    rt.settings.max_upload_bytes = 10_000
    rt.settings.max_import_bytes = 10_000
    with TestClient(create_app(rt), raise_server_exceptions=False) as small:
        big = b"\x89PNG" + b"0" * 20_000
        _assert_error(
            small.post("/v1/screen", files={"file": ("a.png", big)}, headers=auth),
            413,
            "media_too_large",
        )
        _assert_error(
            small.post(
                "/v1/banks/x/import",
                params={"format": "text"},
                content=b"a" * 300_000,
                headers=auth,
            ),
            413,
            "payload_too_large",
        )


def test_too_many_pixels(client, auth, rt):
    rt.screening._limits = type(rt.settings.image_limits)(max_bytes=10**7, max_pixels=1000)
    data = encode(__import__("numpy").zeros((100, 100, 3), dtype="uint8"))
    _assert_error(
        client.post("/v1/screen", files={"file": ("a.png", data)}, headers=auth),
        413,
        "media_too_many_pixels",
    )


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/screen", "/v1/screen/hashes", "/v1/banks", "/v1/banks/{bank}/import"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_a_bug_is_a_500_with_a_code_and_no_details(client, auth, rt, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug with a secret path /srv/x")

    monkeypatch.setattr(rt.banks, "list_banks", broken)
    r = client.get("/v1/banks", headers=auth)
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error" and "/srv/x" not in r.text


def test_malformed_multipart_is_a_400(client, auth):
    r = client.post(
        "/v1/screen",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
        headers={**auth, "content-type": "multipart/form-data"},  # no boundary
    )
    _assert_error(r, 400, "bad_request")
