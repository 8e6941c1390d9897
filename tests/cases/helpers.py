"""Helpers for the registry/report/case tests: users of each role, a platform key."""

from __future__ import annotations

from takedown.runtime import Runtime

PASSWORD = "correct horse battery staple"


def user_headers(rt: Runtime, username: str, role: str) -> dict[str, str]:
    rt.users.create(username, PASSWORD, role, actor="test")
    grant = rt.users.sign_in(username, PASSWORD)
    return {"Authorization": f"Bearer {grant.token}"}


def platform_headers(rt: Runtime) -> dict[str, str]:
    _, key = rt.api_keys.create("platform", ["platform"], actor="test")
    return {"Authorization": f"Bearer {key}"}


def parent_report(item_ids: list[str], **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "category": "csam",
        "reporter_role": "parent_guardian",
        "item_ids": item_ids,
        "explanation": "This video shows my son; he was 13 and was blackmailed into it.",
        "good_faith": True,
    }
    body.update(extra)
    return body
