"""Users, tokens and the role × endpoint matrix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from takedown.domain.access import ROLE_PERMISSIONS, Permission
from takedown.domain.cases import UserRole
from takedown.runtime import Runtime
from tests.cases.helpers import PASSWORD, user_headers

# Every protected endpoint and the permission it needs. The matrix test walks each role
# against each row, so a new endpoint must be added here to be covered.
ENDPOINTS: list[tuple[str, str, Permission, dict | None]] = [
    ("post", "/v1/screen/hashes", Permission.SCREEN, {"md5": "a" * 32}),
    ("get", "/v1/banks", Permission.BANKS_READ, None),
    ("post", "/v1/banks", Permission.BANKS_WRITE, {"name": "matrix"}),
    ("post", "/v1/banks/matrix/media/disable", Permission.BANKS_WRITE, None),
    ("post", "/v1/banks/matrix/media/enable", Permission.BANKS_WRITE, None),
    ("put", "/v1/accounts/a1", Permission.REGISTRY_WRITE, {}),
    ("put", "/v1/items/i1", Permission.REGISTRY_WRITE, {}),
    ("post", "/v1/items/i1/views", Permission.REGISTRY_WRITE, {"view_count": 1}),
    ("get", "/v1/cases", Permission.CASES_READ, None),
    ("get", "/v1/cases/{case}", Permission.CASES_READ, None),
    (
        "post",
        "/v1/cases/{case}/decisions",
        Permission.CASES_DECIDE,
        {"outcome": "needs_info", "reasons": "Need the full video to decide."},
    ),
    (
        "post",
        "/v1/cases/{case}/appeals",
        Permission.UPLOADER_APPEAL,
        {"reason": "This is my own holiday photo."},
    ),
    ("get", "/v1/users", Permission.USERS_ADMIN, None),
    ("get", "/v1/outbox", Permission.OUTBOX_ADMIN, None),
    ("post", "/v1/outbox/01NOSUCH/redeliver", Permission.OUTBOX_ADMIN, None),
    (
        "post",
        "/v1/users",
        Permission.USERS_ADMIN,
        {"username": "new-user", "password": PASSWORD, "role": "legal"},
    ),
    ("get", "/v1/legal/queue", Permission.LEGAL_READ, None),
    ("get", "/v1/legal/cases/{case}/filings", Permission.LEGAL_READ, None),
    ("get", "/v1/legal/filings/01NOSUCH", Permission.LEGAL_READ, None),
    (
        "get",
        "/v1/legal/dsa/transparency?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z",
        Permission.LEGAL_READ,
        None,
    ),
    (
        "get",
        "/v1/legal/take-it-down/compliance?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z",
        Permission.LEGAL_READ,
        None,
    ),
    ("post", "/v1/legal/cases/{case}/cybertipline", Permission.LEGAL_FILE, {}),
    ("post", "/v1/legal/cases/{case}/nca", Permission.LEGAL_FILE, {"reference": "NCA-1"}),
    ("post", "/v1/legal/filings/01NOSUCH/submit", Permission.LEGAL_FILE, None),
    ("post", "/v1/legal/filings/01NOSUCH/retract", Permission.LEGAL_FILE, None),
    ("get", "/v1/evidence?case_id={case}&purpose=matrix+check", Permission.EVIDENCE, None),
    (
        "post",
        "/v1/admin/clock/reports/01NOSUCH/received",
        Permission.CLOCK_OVERRIDE,
        {"at": "2026-01-01T00:00:00Z"},
    ),
    (
        "post",
        "/v1/admin/clock/decisions/01NOSUCH/decided",
        Permission.CLOCK_OVERRIDE,
        {"at": "2026-01-01T00:00:00Z"},
    ),
    ("get", "/metrics", Permission.METRICS, None),
    ("get", "/v1/exchange-shares", Permission.SHARES_DECIDE, None),
    ("post", "/v1/exchange-shares/01NOSUCH/approve", Permission.SHARES_DECIDE, {}),
    ("post", "/v1/exchange-shares/01NOSUCH/refuse", Permission.SHARES_DECIDE, {"reason": "x"}),
]


@pytest.fixture
def case_id(rt: Runtime, client) -> str:
    from takedown.services.registry.service import ItemInput

    rt.registry.upsert_item(ItemInput("i1", account_id="a1"), actor="t")
    r = client.post(
        "/v1/reports",
        json={
            "category": "csam",
            "reporter_role": "user",
            "item_ids": ["i1"],
            "explanation": "Looks like abuse material.",
            "good_faith": True,
        },
    )
    return str(r.json()["case_number"])


@pytest.mark.parametrize("role", [r.value for r in UserRole])
def test_role_by_endpoint_matrix(rt: Runtime, client, case_id: str, role: str):
    headers = user_headers(rt, f"user-{role}", role)
    allowed = ROLE_PERMISSIONS[UserRole(role)]
    for method, path, permission, body in ENDPOINTS:
        url = path.format(case=case_id)
        kwargs = {"json": body} if body is not None else {}
        r = getattr(client, method)(url, headers=headers, **kwargs)
        if permission in allowed:
            assert r.status_code < 400 or r.json()["code"] not in (
                "forbidden",
                "unauthenticated",
            ), (role, method, url, r.text)
        else:
            assert r.status_code == 403 and r.json()["code"] == "forbidden", (
                role,
                method,
                url,
                r.text,
            )
        if r.status_code >= 500:
            pytest.fail(f"{role} {method} {url}: {r.text}")


def test_every_endpoint_refuses_anonymous_callers(client, case_id: str):
    for method, path, _, body in ENDPOINTS:
        kwargs = {"json": body} if body is not None else {}
        r = getattr(client, method)(path.format(case=case_id), **kwargs)
        assert r.status_code == 401, (method, path)


def test_api_keys_never_decide_cases(rt: Runtime, client, case_id: str):
    _, key = rt.api_keys.create("robot", ["admin"], actor="t")
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers={"Authorization": f"Bearer {key}"},
        json={"outcome": "no_violation", "reasons": "automated dismissal"},
    )
    assert r.status_code == 403


def test_sign_in_tokens_expire_and_can_be_revoked(rt: Runtime, client):
    rt.users.create("ann", PASSWORD, "moderator", actor="t")
    r = client.post("/v1/auth/token", json={"username": "ann", "password": "wrong password!"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = client.post("/v1/auth/token", json={"username": "nobody", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    grant = client.post("/v1/auth/token", json={"username": "ann", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {grant['token']}"}
    assert client.get("/v1/cases", headers=headers).status_code == 200
    assert client.post("/v1/auth/logout", headers=headers).status_code == 204
    r = client.get("/v1/cases", headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    r = client.get("/v1/cases", headers={"Authorization": "Bearer tdu_unknown"})
    assert r.json()["code"] == "invalid_token"
    rt.users._ttl = timedelta(seconds=-1)  # issue an already expired token
    expired = rt.users.sign_in("ann", PASSWORD)
    r = client.get("/v1/cases", headers={"Authorization": f"Bearer {expired.token}"})
    assert r.status_code == 401 and r.json()["code"] == "token_expired"


def test_user_administration(rt: Runtime, client):
    admin = user_headers(rt, "root-admin", "admin")
    r = client.post(
        "/v1/users",
        headers=admin,
        json={"username": "Bo", "password": PASSWORD, "role": "child_safety_specialist"},
    )
    assert r.status_code == 201 and r.json()["username"] == "bo"
    user_id = r.json()["id"]
    for body, code in (
        ({"username": "bo", "password": PASSWORD, "role": "legal"}, "user_exists"),
        ({"username": "x", "password": PASSWORD, "role": "legal"}, "invalid_username"),
        ({"username": "cy", "password": "short", "role": "legal"}, "weak_password"),
        ({"username": "cy", "password": PASSWORD, "role": "king"}, "invalid_role"),
    ):
        r = client.post("/v1/users", headers=admin, json=body)
        assert r.status_code in (409, 422) and r.json()["code"] == code
    r = client.patch(f"/v1/users/{user_id}", headers=admin, json={"active": False})
    assert r.json()["active"] is False
    r = client.post("/v1/auth/token", json={"username": "bo", "password": PASSWORD})
    assert r.status_code == 401
    r = client.patch("/v1/users/01NOSUCHUSER", headers=admin, json={"active": False})
    assert r.status_code == 404 and r.json()["code"] == "user_not_found"


@pytest.mark.production_password_hashing
def test_passwords_are_stored_with_argon2(rt: Runtime):
    from sqlalchemy import select

    from takedown.store.models import User

    rt.users.create("dee", PASSWORD, "legal", actor="t")
    with rt.sessions() as s:
        stored = s.scalars(select(User.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    # "No such user" is checked against a stand-in hash with the same parameters, so it
    # costs as much time as a wrong password for a real one.
    from argon2 import extract_parameters

    from takedown.services.identity.users import DUMMY_HASH

    assert extract_parameters(DUMMY_HASH) == extract_parameters(stored)
