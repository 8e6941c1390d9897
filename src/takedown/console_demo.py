"""Stand-in data for the review console: its browser tests and its screenshots.

Every picture is a benign photo shipped inside the scikit-image wheel (a cat, a cup of
coffee, a rocket, an astronaut) standing in for reported material. There is no abuse
material anywhere in this project.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from takedown.demo import standin_dir
from takedown.domain.reports import ReportInput
from takedown.ids import utcnow
from takedown.runtime import Runtime
from takedown.services.banks.service import Provenance
from takedown.services.registry.service import ItemInput, MediaInput

PASSWORD = "stand-in password 1"
USERS = {
    "mod": "moderator",
    "mod2": "moderator",
    "spec": "child_safety_specialist",
    "legal": "legal",
    "admin": "admin",
}
# Report text that tries to run a script: the console must show it as text.
HOSTILE_TEXT = (
    "This shows my son; he was 13. <script>document.title='pwned'</script>"
    "<img src=x onerror=\"document.title='pwned'\">"
)


@dataclass(frozen=True)
class DemoCases:
    minor_case: str  # a parent's CSAM report, restricted first, media with bytes
    ncii_case: str  # an adult's intimate-imagery report
    other_case: str  # a bystander's report with hash-only media


def seed_console_demo(rt: Runtime, users: Iterable[str] = tuple(USERS)) -> DemoCases:
    """The cases, and the named users of ``USERS`` (tests create theirs as needed:
    hashing a password with argon2 is slow on purpose)."""
    for name in users:
        rt.users.create(name, PASSWORD, USERS[name], actor="demo")
    photos = standin_dir()
    rt.banks.create_bank(
        "standins-review",
        actor="demo",
        source="ncmec",
        match_action="review",
        description="DEMO: benign stand-in photos banked as if they were known material.",
    )
    rt.banks.add_media(
        "standins-review",
        (photos / "chelsea.png").read_bytes(),
        Provenance(source_id="standin-0001", category="demo-standin", note="stand-in"),
        actor="demo",
    )
    posted = utcnow() - timedelta(hours=5)
    _item(rt, "post-1", "acc-known", photos / "chelsea.png", views=167_000, posted=posted)
    rt.registry.upsert_item(
        ItemInput("repost-1", account_id="acc-other", reposts="post-1", view_count=2_223),
        actor="demo",
    )
    _item(rt, "post-2", "acc-ex", photos / "coffee.png", views=420, posted=posted)
    rt.registry.upsert_item(
        ItemInput("post-3", account_id="acc-3", view_count=12, url="https://example.org/p/3"),
        actor="demo",
    )
    rt.registry.attach_media("post-3", MediaInput(sha256="ab" * 32, md5="cd" * 16), actor="demo")
    minor = rt.cases.submit_report(
        ReportInput(
            category="csam",
            reporter_role="parent_guardian",
            explanation=HOSTILE_TEXT,
            item_ids=["post-1"],
            reporter_name="Pat Parent",
            reporter_email="pat.parent@example.org",
            good_faith=True,
        ),
        channel="web",
    )
    ncii = rt.cases.submit_report(
        ReportInput(
            category="ncii",
            reporter_role="person_depicted",
            explanation="These are private photos of me, posted without my consent.",
            item_ids=["post-2"],
            reporter_name="Sam Depicted",
            reporter_email="sam@example.org",
            signature="Sam Depicted",
            good_faith=True,
            not_consensual=True,
        ),
        channel="web",
    )
    other = rt.cases.submit_report(
        ReportInput(
            category="other",
            reporter_role="user",
            explanation="Looks like a scam.",
            item_ids=["post-3"],
            reporter_name="Bo Bystander",
            reporter_email="bo@example.org",
            good_faith=True,
        ),
        channel="web",
    )
    return DemoCases(minor.case_number, ncii.case_number, other.case_number)


def _item(
    rt: Runtime, pid: str, account: str, photo: Path, *, views: int, posted: datetime
) -> None:
    data = photo.read_bytes()
    rt.registry.upsert_item(
        ItemInput(pid, account_id=account, view_count=views, posted_at=posted),
        actor="demo",
    )
    rt.registry.attach_media(
        pid,
        rt.registry.media_from_bytes(data),
        actor="demo",
        content=data,
        content_type="image/png",
    )
