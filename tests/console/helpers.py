"""Signing in to the console through its real forms, as a browser would."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from takedown.console_demo import PASSWORD, USERS
from takedown.domain.access import ROLE_PERMISSIONS, Principal
from takedown.domain.cases import UserRole
from takedown.runtime import Runtime


def ensure_user(rt: Runtime, name: str) -> Principal:
    """The stand-in user ``name`` (created on first use), as a principal."""
    view = next((u for u in rt.users.list() if u.username == name), None)
    if view is None:
        view = rt.users.create(name, PASSWORD, USERS[name], actor="test")
    role = UserRole(view.role)
    return Principal("user", view.id, view.username, ROLE_PERMISSIONS[role], role)


def sign_in(client: TestClient, username: str, password: str = PASSWORD, csrf: bool = True) -> str:
    """Sign in with the login form; return the session's CSRF token."""
    if username in USERS:
        ensure_user(client.app.state.runtime, username)  # type: ignore[attr-defined]
    client.cookies.clear()
    page = client.get("/console/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert login_csrf
    done = client.post(
        "/console/login",
        data={"csrf": login_csrf.group(1), "username": username, "password": password},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    if not csrf:
        return ""
    return csrf_of(client.get("/console/settings").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def media_urls(html: str) -> list[str]:
    return re.findall(r'src="(/console/m/[^"]+)"', html)


def reveal_urls(html: str) -> list[str]:
    return re.findall(r'action="(/console/cases/[^"]+/reveal)"', html)
