"""A confirmed CSAM case for the legal tests: two accounts, two files (benign stand-in
photos from the scikit-image wheel, never real material), a parent's report and a
moderator's violation decision with a file classification."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from takedown.config import Settings
from takedown.runtime import Runtime
from takedown.services.legal.cybertipline import cybertipline_service
from takedown.services.registry.service import AccountInput, ItemInput, MediaInput
from takedown.store.db import unit_of_work
from takedown.store.models import Media
from tests.cases.helpers import parent_report, user_headers
from tests.conftest import standin_bytes

POSTED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


class StandinBytes:
    """The media-bytes provider the evidence store will implement, holding stand-ins."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def read(self, media_public_id: str, sha256: str) -> bytes | None:
        self.reads.append(media_public_id)
        data = self.files.get(media_public_id)
        assert data is None or hashlib.sha256(data).hexdigest() == sha256
        return data


@dataclass
class ConfirmedCase:
    case_id: str
    media: dict[str, str]  # item platform id -> media public id
    data: dict[str, bytes]  # media public id -> bytes
    moderator: dict[str, str]
    legal: dict[str, str]


def _media(data: bytes) -> MediaInput:
    return MediaInput(sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())


def confirmed_case(rt: Runtime, client, *, review: list[dict] | None = None) -> ConfirmedCase:
    one, two = standin_bytes("camera.png"), standin_bytes("coins.png")
    rt.registry.upsert_account(AccountInput("acc-a", handle="poster_a"), actor="t")
    rt.registry.upsert_item(
        ItemInput(
            "p1",
            account_id="acc-a",
            url="https://social.example/p/1",
            posted_at=POSTED,
            media=[_media(one)],
        ),
        actor="t",
    )
    rt.registry.upsert_item(
        ItemInput(
            "p2",
            account_id="acc-b",
            url="https://social.example/p/2",
            reposts="p1",
            media=[_media(two)],
        ),
        actor="t",
    )
    with unit_of_work(rt.sessions, write=False) as s:
        ids = {sha: pid for sha, pid in s.execute(select(Media.sha256, Media.public_id)).all()}
    m1, m2 = ids[hashlib.sha256(one).hexdigest()], ids[hashlib.sha256(two).hexdigest()]
    case_id = client.post("/v1/reports", json=parent_report(["p1"])).json()["case_number"]
    moderator = user_headers(rt, "mod", "moderator")
    legal = user_headers(rt, "lex", "legal")
    r = client.post(
        f"/v1/cases/{case_id}/decisions",
        headers=moderator,
        json={
            "outcome": "violation",
            "policy": "csam",
            "reasons": "Apparent child sexual abuse material (stand-in in tests).",
            "media_review": review
            if review is not None
            else [
                {
                    "media_id": m1,
                    "classification": "B2",
                    "annotations": ["viral", "possibleSelfProduction"],
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    return ConfirmedCase(case_id, {"p1": m1, "p2": m2}, {m1: one, m2: two}, moderator, legal)


def wire_ncmec(
    rt: Runtime, url: str | None, data: dict[str, bytes] | None, **extra
) -> StandinBytes:
    from tests.legal.ncmec_server import PASSWORD, USER

    values = {
        "database_url": rt.settings.database_url,
        "data_dir": rt.settings.data_dir,
        "ncmec_base_url": url,
        "ncmec_username": USER if url else None,
        "ncmec_password": PASSWORD if url else None,
        "ncmec_reporter_email": "legal@platform.example",
        "ncmec_reporter_first_name": "Lee",
        "ncmec_reporter_last_name": "Gal",
        "ncmec_platform_name": "Social Example",
        "ncmec_legal_url": "https://platform.example/legal",
    }
    settings = Settings(**{**values, **extra})
    rt.cybertipline = cybertipline_service(rt.sessions, settings, rt.blobs, rt.evidence)
    provider = StandinBytes(data or {})
    rt.cybertipline.media = provider
    return provider
