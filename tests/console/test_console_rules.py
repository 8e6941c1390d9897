"""The console's rules through the real app (TestClient), on SQLite and PostgreSQL:
sessions and CSRF, locks, roles, media access and its audit, wellness, the dashboard."""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select, update

from takedown.console_demo import PASSWORD, DemoCases
from takedown.domain.hashlists import HashRecord
from takedown.errors import Conflict, Forbidden, InvalidRequest, NotFound
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.store.db import unit_of_work
from takedown.store.models import AuditEvent, Case, CaseLock
from tests.console.helpers import csrf_of, ensure_user, media_urls, reveal_urls, sign_in

# Pages whose logic has no backend-specific SQL run on SQLite only (the suite's time);
# the rules (CSRF, locks, roles, media access and audit, the dashboard's SQL) run on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _state(rt: Runtime, case_id: str) -> str:
    with unit_of_work(rt.sessions, write=False) as s:
        return s.scalars(select(Case.state).where(Case.public_id == case_id)).one()


def _views(rt: Runtime) -> list[tuple[str, str, dict]]:
    with unit_of_work(rt.sessions, write=False) as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "media.viewed").order_by(AuditEvent.id)
        )
        return [(e.actor, e.object_id, json.loads(e.details)) for e in rows]


# -- sessions and CSRF ----------------------------------------------------------------------
def test_session_cookie_is_httponly_strict_and_sign_out_ends_it(client, rt, demo):
    page = client.get("/console/login")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    sign_in(client, "mod")
    cookie = client.cookies.jar
    session = next(c for c in cookie if c.name == "takedown_console")
    assert session.path == "/console" and not session.secure
    assert session.has_nonstandard_attr("HttpOnly")
    assert session.get_nonstandard_attr("SameSite").lower() == "strict"
    token = session.value
    csrf = csrf_of(client.get("/console/settings").text)
    assert (
        client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False).status_code
        == 303
    )
    client.cookies.set("takedown_console", token, path="/console")
    again = client.get("/console/queue", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/console/login"


@sqlite_only
def test_secure_cookie_when_configured(client, rt, demo):
    rt.settings.console_cookie_secure = True
    page = client.get("/console/login")
    login = next(h for h in page.headers.get_list("set-cookie") if "login" in h)
    assert "Secure" in login


@sqlite_only
def test_sign_in_refused_without_login_token_or_with_a_wrong_password(client, demo):
    refused = client.post("/console/login", data={"username": "mod", "password": PASSWORD})
    assert refused.status_code == 403 and "csrf_failed" in refused.text
    client.get("/console/login")
    token = client.cookies.get("takedown_console_login")
    wrong = client.post(
        "/console/login", data={"csrf": token, "username": "mod", "password": "not it at all"}
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text


def test_every_post_without_the_csrf_token_is_refused_and_changes_nothing(client, rt, demo):
    csrf = sign_in(client, "mod")
    case = demo.minor_case
    posts = [
        f"/console/cases/{case}/claim",
        f"/console/cases/{case}/release",
        f"/console/cases/{case}/decide",
        f"/console/cases/{case}/escalate",
        "/console/settings",
        "/console/password",
        "/console/break",
        "/console/logout",
        f"/console/cases/{case}/media/x/reveal",
        "/console/admin/users",
    ]
    for path in posts:
        for data in ({}, {"csrf": "forged-" + csrf[:10]}):
            answer = client.post(path, data=data, follow_redirects=False)
            assert answer.status_code == 403, path
            assert "csrf_failed" in answer.text, path
    assert rt.review.lock_of(case) is None
    # the session still works: the refusals did not sign anyone out
    assert client.get("/console/queue").status_code == 200


def test_console_refuses_accounts_without_console_permissions(client, rt, demo):
    rt.users.create("integration", PASSWORD, "platform", actor="t")
    sign_in(client, "integration", csrf=False)
    page = client.get("/console/queue")
    assert page.status_code == 403 and "forbidden" in page.text


# -- locks ------------------------------------------------------------------------------------
def test_a_claimed_case_is_worked_by_one_reviewer_until_the_lock_lapses(client, rt, demo):
    case = demo.ncii_case
    csrf = sign_in(client, "mod")
    assert client.post(f"/console/cases/{case}/claim", data={"csrf": csrf}).status_code == 200
    assert _state(rt, case) == "in_review"
    csrf2 = sign_in(client, "mod2")
    taken = client.post(f"/console/cases/{case}/claim", data={"csrf": csrf2})
    assert taken.status_code == 409 and "case_locked" in taken.text
    decided = client.post(
        f"/console/cases/{case}/decide",
        data={
            "csrf": csrf2,
            "outcome": "violation",
            "policy": "ncii",
            "reasons": "Confirmed NCII.",
        },
    )
    assert decided.status_code == 409 and "mod is working on this case" in decided.text
    with unit_of_work(rt.sessions) as s:  # mod walked away: the lock lapses
        s.execute(update(CaseLock).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post(f"/console/cases/{case}/claim", data={"csrf": csrf2}).status_code == 200
    assert rt.review.lock_of(case).username == "mod2"


def test_deciding_needs_the_lock(rt, demo):
    mod = ensure_user(rt, "mod")
    with pytest.raises(Conflict) as err:
        rt.review.decide(
            demo.ncii_case, mod, outcome="violation", policy="ncii", reasons="Confirmed NCII."
        )
    assert err.value.code == "lock_required"
    rt.review.claim(demo.ncii_case, mod)
    rt.review.decide(
        demo.ncii_case, mod, outcome="violation", policy="ncii", reasons="Confirmed NCII."
    )
    assert _state(rt, demo.ncii_case) == "decided"
    assert rt.review.lock_of(demo.ncii_case) is None  # released with the decision


def test_two_reviewers_racing_for_a_case_one_wins(rt, demo):
    people = [ensure_user(rt, n) for n in ("mod", "mod2")]
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def grab(p):
        start.wait()
        try:
            rt.review.claim(demo.other_case, p)
            outcomes.append("won")
        except Conflict as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=grab, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["case_locked", "won"]


def test_escalation_goes_to_the_specialists_and_their_second_review_decides(client, rt, demo):
    case = demo.minor_case
    csrf = sign_in(client, "mod")
    client.post(f"/console/cases/{case}/claim", data={"csrf": csrf})
    short = client.post(f"/console/cases/{case}/escalate", data={"csrf": csrf, "note": "hm"})
    assert short.status_code == 422 and "reasons_required" in short.text
    client.post(
        f"/console/cases/{case}/escalate",
        data={"csrf": csrf, "note": "Needs a specialist's eye: age unclear."},
    )
    assert _state(rt, case) == "awaiting_second_review"
    assert case not in client.get("/console/queue?team=moderation").text
    spec_csrf = sign_in(client, "spec")
    assert case in client.get("/console/queue?team=specialists").text
    client.post(f"/console/cases/{case}/claim", data={"csrf": spec_csrf})
    page = client.get(f"/console/cases/{case}")
    assert "Awaiting second review" in page.text and "escalated" in page.text
    done = client.post(
        f"/console/cases/{case}/decide",
        data={"csrf": spec_csrf, "outcome": "violation", "policy": "csam", "reasons": "Confirmed."},
    )
    assert done.status_code == 200 and _state(rt, case) == "decided"
    spec = ensure_user(rt, "spec")
    rt.review.claim(case, spec)
    with pytest.raises(Forbidden):  # specialists decide; they do not escalate
        rt.review.escalate(case, spec, "Sending it on to someone else.")
    admin = ensure_user(rt, "admin")
    rt.review.release(case, spec)
    rt.review.claim(case, admin)
    with pytest.raises(Conflict) as err:
        rt.review.escalate(case, admin, "Sending it on to someone else.")
    assert err.value.code == "not_escalatable"


# -- roles and escaping -------------------------------------------------------------------------
def test_reporter_identity_only_for_legal_and_admin(client, demo):
    sign_in(client, "mod")
    page = client.get(f"/console/cases/{demo.minor_case}").text
    assert "Pat Parent" not in page and "pat.parent@example.org" not in page
    assert "visible to legal staff and admins only" in page
    for who in ("legal", "admin"):
        sign_in(client, who)
        assert "pat.parent@example.org" in client.get(f"/console/cases/{demo.minor_case}").text


@sqlite_only
def test_report_text_is_escaped(client, demo):
    sign_in(client, "mod")
    page = client.get(f"/console/cases/{demo.minor_case}").text
    assert "<script>document.title" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
    assert "<img src=x" not in page


@sqlite_only
def test_only_admins_reach_the_admin_pages(client, rt, demo):
    sign_in(client, "mod")
    assert client.get("/console/admin/users").status_code == 403
    csrf = sign_in(client, "admin")
    made = client.post(
        "/console/admin/users",
        data={"csrf": csrf, "username": "newmod", "password": PASSWORD, "role": "moderator"},
    )
    assert made.status_code == 200 and "newmod" in made.text
    key = client.post(
        "/console/admin/keys", data={"csrf": csrf, "name": "ingest", "scopes": ["platform"]}
    )
    assert key.status_code == 201
    secret = re.search(r'value="(tdk_[^"]+)"', key.text).group(1)
    assert rt.api_keys.authenticate(secret).name == "ingest"
    assert secret not in client.get("/console/admin/keys").text  # shown once
    key_id = rt.api_keys.list()[-1].id
    client.post(f"/console/admin/keys/{key_id}/revoke", data={"csrf": csrf})
    assert rt.api_keys.list()[-1].revoked_at is not None


@sqlite_only
def test_legal_reads_but_cannot_claim(client, demo):
    csrf = sign_in(client, "legal")
    page = client.get(f"/console/cases/{demo.minor_case}")
    assert page.status_code == 200 and 'id="claim"' not in page.text
    refused = client.post(f"/console/cases/{demo.minor_case}/claim", data={"csrf": csrf})
    assert refused.status_code == 403


# -- media ---------------------------------------------------------------------------------------
def test_media_is_blurred_no_store_and_every_serving_is_audited(client, rt, demo):
    csrf = sign_in(client, "mod")
    page = client.get(f"/console/cases/{demo.minor_case}").text
    [preview] = media_urls(page)
    blurred = client.get(preview)
    assert blurred.status_code == 200 and blurred.headers["cache-control"] == "no-store"
    assert blurred.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(blurred.content)).mode == "L"  # greyscale by default
    [reveal] = reveal_urls(page)
    link = client.post(
        reveal, data={"csrf": csrf, "purpose": "review"}, headers={"Accept": "application/json"}
    ).json()["url"]
    full = client.get(link)
    assert full.status_code == 200 and full.headers["cache-control"] == "no-store"
    assert full.content.startswith(b"\x89PNG")
    mod = rt.users.authenticate(client.cookies.get("takedown_console"))
    views = _views(rt)
    assert [v[2]["full"] for v in views] == [False, True]
    for actor, _media, details in views:
        assert actor == "user:mod"
        assert details == {
            "purpose": "review",
            "case": demo.minor_case,
            "full": details["full"],
            "user_id": mod.id,
            "item": details["item"],
            "account": details["account"],
        }
    assert views[1][2]["item"]  # the reveal names the item whose copy was shown
    history = client.get(f"/console/cases/{demo.minor_case}").text
    assert "media.viewed" in history


def test_media_links_cannot_be_guessed_shared_or_reused_late(client, rt, demo):
    sign_in(client, "mod")
    [preview] = media_urls(client.get(f"/console/cases/{demo.minor_case}").text)
    sign_in(client, "legal")  # another session: the link is nothing there
    other = client.get(preview)
    assert other.status_code == 404 and "media_link_invalid" in other.text
    tampered = preview[:-3] + ("AAA" if not preview.endswith("AAA") else "BBB")
    assert client.get(tampered).status_code == 404
    client.cookies.clear()  # and without a session: sign in first
    assert client.get(preview, follow_redirects=False).headers["location"] == "/console/login"
    from takedown.web.console.security import MediaLink, read_media_link, sign_media_link

    late = sign_media_link("tdu_x", MediaLink("c", "m", "review", True, 1000))
    with pytest.raises(NotFound):
        read_media_link("tdu_x", late, now=1001)
    assert read_media_link("tdu_x", late, now=999).media_id == "m"


def test_media_only_for_people_in_the_media_roles(rt, demo, admin_key):
    key = rt.api_keys.authenticate(admin_key)
    with pytest.raises(Forbidden):
        rt.review.view_media(demo.minor_case, "any", key, purpose="review", full=True)
    mod = ensure_user(rt, "mod")
    with pytest.raises(InvalidRequest) as err:
        rt.review.view_media(demo.minor_case, "any", mod, purpose="curiosity", full=True)
    assert err.value.code == "invalid_purpose"
    with pytest.raises(NotFound) as err:
        rt.review.view_media(demo.minor_case, "nope", mod, purpose="review", full=True)
    assert err.value.code == "media_not_found"
    [hash_only] = rt.review.case_media(demo.other_case, mod)
    assert not hash_only.has_bytes
    with pytest.raises(NotFound) as err:
        rt.review.view_media(demo.other_case, hash_only.id, mod, purpose="review", full=True)
    assert err.value.code == "media_not_stored"
    assert _views(rt) == []  # refusals leave no audit of a view that did not happen


@sqlite_only
def test_case_page_shows_bank_matches_with_provenance(client, demo):
    sign_in(client, "spec")
    page = client.get(f"/console/cases/{demo.minor_case}").text
    assert "standins-review" in page and "standin-0001" in page and "ncmec" in page
    assert "views since the first report" in page
    other = client.get(f"/console/cases/{demo.other_case}").text
    assert "Only the hash of this image is known" in other


def test_case_page_says_which_banked_signals_are_not_matchable_here(client, rt, demo):
    sign_in(client, "spec")
    assert 'id="not-matchable"' not in client.get(f"/console/cases/{demo.minor_case}").text
    bank = rt.banks.create_bank("pdna-list", actor="test", source="ncmec")
    photodna = ",".join(str(i % 256) for i in range(144))  # a made-up 144-byte hash
    rt.banks.add_hashes(bank.name, [HashRecord("photodna", photodna)], actor="test")
    page = client.get(f"/console/cases/{demo.minor_case}").text
    assert "Not matchable here: photodna (1 banked entry)" in page
    rt.banks.update_bank(bank.name, actor="test", enabled=False, reason="retired list")
    assert 'id="not-matchable"' not in client.get(f"/console/cases/{demo.minor_case}").text


# -- wellness, password, dashboard -----------------------------------------------------------------
@sqlite_only
def test_wellness_settings_change_the_previews(client, rt, demo):
    csrf = sign_in(client, "mod")
    bad = client.post(
        "/console/settings", data={"csrf": csrf, "blur_strength": "1", "break_minutes": "60"}
    )
    assert bad.status_code == 422 and "invalid_settings" in bad.text
    nan = client.post(
        "/console/settings", data={"csrf": csrf, "blur_strength": "x", "break_minutes": "60"}
    )
    assert nan.status_code == 422
    client.post(
        "/console/settings", data={"csrf": csrf, "blur_strength": "8", "break_minutes": "45"}
    )
    mod = rt.users.authenticate(client.cookies.get("takedown_console"))
    assert rt.review.reviewer(mod).wellness.greyscale is False
    [preview] = media_urls(client.get(f"/console/cases/{demo.minor_case}").text)
    assert Image.open(io.BytesIO(client.get(preview).content)).mode == "RGB"


@sqlite_only
def test_break_reminder_shows_after_the_stretch(client, rt, demo):
    from takedown.store.models import ReviewerSettings

    csrf = sign_in(client, "mod")
    assert 'id="break-reminder"' in client.get("/console/queue").text
    assert "data-due" in client.get("/console/queue").text
    with unit_of_work(rt.sessions) as s:
        s.execute(update(ReviewerSettings).values(stretch_started_at=utcnow() - timedelta(hours=3)))
    page = client.get("/console/queue").text
    assert 'role="status" data-due' in page and "Time for a break" in page
    assert "hidden>" not in page.split('id="break-reminder"')[1].split("</div>")[0][:400]
    back = client.post(
        "/console/break", data={"csrf": csrf, "next": "//evil.example"}, follow_redirects=False
    )
    assert back.headers["location"].startswith("/console?")


@sqlite_only
def test_password_change_checks_the_current_one_and_ends_other_sign_ins(client, rt, demo):
    csrf = sign_in(client, "mod")
    other = rt.users.sign_in("mod", PASSWORD).token
    new = "a brand new passphrase"
    wrong = client.post(
        "/console/password",
        data={
            "csrf": csrf,
            "current_password": "nope",
            "new_password": new,
            "repeat_password": new,
        },
    )
    assert wrong.status_code == 401 and "invalid_credentials" in wrong.text
    differ = client.post(
        "/console/password",
        data={
            "csrf": csrf,
            "current_password": PASSWORD,
            "new_password": new,
            "repeat_password": "x",
        },
    )
    assert differ.status_code == 422
    ok = client.post(
        "/console/password",
        data={
            "csrf": csrf,
            "current_password": PASSWORD,
            "new_password": new,
            "repeat_password": new,
        },
    )
    assert ok.status_code == 200 and "password is changed" in ok.text
    with pytest.raises(Exception):  # noqa: B017 - Unauthenticated: revoked
        rt.users.authenticate(other)
    assert rt.users.sign_in("mod", new).token


def test_dashboard_figures(client, rt, demo):
    csrf = sign_in(client, "mod")
    client.post(f"/console/cases/{demo.ncii_case}/claim", data={"csrf": csrf})
    client.post(
        f"/console/cases/{demo.ncii_case}/decide",
        data={"csrf": csrf, "outcome": "violation", "policy": "ncii", "reasons": "Confirmed NCII."},
    )
    mod = rt.users.authenticate(client.cookies.get("takedown_console"))
    now = utcnow()
    d = rt.review.dashboard(mod, now - timedelta(days=1), now + timedelta(minutes=1))
    assert d.reported_cases == 3 and d.open_total == 2
    assert d.decision_clock.met == 1 and d.median_to_decision is not None
    assert d.takedown_clock.met == 1  # the NCII request was restricted at once
    assert d.median_to_restriction == timedelta(0) or d.median_to_restriction < timedelta(1)
    assert client.get("/console/dashboard?days=30").status_code == 200
    bad = client.get("/console/dashboard?days=5")
    assert bad.status_code == 422 and "invalid_period" in bad.text
    with pytest.raises(InvalidRequest):
        rt.review.dashboard(mod, now, now)


@sqlite_only
def test_decision_form_keeps_what_was_typed_when_refused(client, demo):
    csrf = sign_in(client, "mod")
    client.post(f"/console/cases/{demo.ncii_case}/claim", data={"csrf": csrf})
    refused = client.post(
        f"/console/cases/{demo.ncii_case}/decide",
        data={"csrf": csrf, "outcome": "violation", "reasons": "Typed reasons stay."},
    )
    assert refused.status_code == 422 and "Typed reasons stay." in refused.text
    long = client.post(
        f"/console/cases/{demo.ncii_case}/decide",
        data={"csrf": csrf, "outcome": "violation", "reasons": "x" * 5001},
    )
    assert long.status_code == 422 and "field_too_long" in long.text


@sqlite_only
def test_queue_filters_and_badges(client, rt, demo: DemoCases):
    sign_in(client, "mod")
    page = client.get("/console/queue?team=moderation").text
    assert page.index(demo.minor_case) < page.index(demo.other_case)  # by priority
    assert "take it down 48h" in page
    ncii = client.get("/console/queue?team=moderation&category=ncii").text
    assert demo.ncii_case in ncii and demo.minor_case not in ncii
    assert client.get("/console/queue?team=nope").status_code == 422
    assert client.get("/console/queue?team=moderation&state=bogus").status_code == 422
    with unit_of_work(rt.sessions) as s:
        s.execute(
            update(Case)
            .where(Case.public_id == demo.minor_case)
            .values(decision_due_at=utcnow() - timedelta(minutes=1))
        )
    assert "decision: overdue" in client.get("/console/queue?team=moderation").text


@sqlite_only
def test_video_is_muted_never_autoplays_and_loads_only_when_revealed(client, rt, demo):
    import hashlib

    from takedown.services.registry.service import MediaInput
    from tests.media.videos import banked_video

    clip = banked_video()  # a stand-in video made from stand-in photos
    rt.registry.attach_media(
        "post-2",
        MediaInput(sha256=hashlib.sha256(clip).hexdigest(), media_type="video"),
        actor="t",
        content=clip,
        content_type="video/mp4",
    )
    csrf = sign_in(client, "mod")
    page = client.get(f"/console/cases/{demo.ncii_case}").text
    video = re.search(r"<video[^>]*>", page).group(0)
    assert "muted" in video and 'preload="none"' in video
    assert "autoplay" not in video and " src=" not in video
    # The poster is a blurred frame, served like an image preview.
    poster = re.search(r'poster="([^"]+)"', video).group(1).replace("&amp;", "&")
    still = client.get(poster)
    assert still.status_code == 200 and still.headers["content-type"] == "image/jpeg"
    assert still.headers["cache-control"] == "no-store" and still.content[:2] == b"\xff\xd8"
    assert all(not details["full"] for _, _, details in _views(rt))  # nothing sharp yet
    reveal = reveal_urls(page)[-1]
    link = client.post(
        reveal,
        data={"csrf": csrf, "purpose": "review"},
        headers={"Accept": "application/json"},
    ).json()["url"]
    served = client.get(link)
    assert served.headers["content-type"] == "video/mp4" and served.content == clip
    assert served.headers["cache-control"] == "no-store"
    assert _views(rt)[-1][2]["full"] is True


def test_a_specialist_lands_on_the_child_safety_work(client, rt, demo: DemoCases):
    """Child-safety cases go to the specialists: the queue a specialist lands on holds
    the open minor-safety case still waiting in moderation, and escalations of any
    category; moderators keep seeing the minor-safety case."""
    sign_in(client, "spec")
    landing = client.get("/console")  # follows the redirect to the specialist's queue
    assert landing.status_code == 200 and "Specialists&#39; queue" in landing.text
    assert demo.minor_case in landing.text
    assert demo.ncii_case not in landing.text and demo.other_case not in landing.text
    # Filters apply: a minor-safety state filter keeps it, another category drops it.
    assert demo.minor_case in client.get("/console/queue?team=specialists&category=csam").text
    assert demo.minor_case not in client.get("/console/queue?team=specialists&category=ncii").text
    state = _state(rt, demo.minor_case)
    assert demo.minor_case in client.get(f"/console/queue?team=specialists&state={state}").text
    # An escalated case of another category waits there too.
    mod = ensure_user(rt, "mod")
    rt.review.claim(demo.ncii_case, mod)
    rt.review.escalate(demo.ncii_case, mod, "Could be a minor: needs a specialist.")
    page = client.get("/console/queue?team=specialists").text
    assert demo.ncii_case in page and demo.minor_case in page
    assert page.index(demo.minor_case) < page.index(demo.ncii_case)  # by priority
    sign_in(client, "mod")
    moderation = client.get("/console").text
    assert demo.minor_case in moderation and demo.ncii_case not in moderation
