"""The case life cycle and the four-eyes rule. Pure rules, no I/O.

    open ──restrict-first──▶ restricted ──needs info──▶ in_review
      │                          │
      └──────── decision ────────┴──▶ decided ──appeal──▶ appealed ──decision──▶ decided
                                   ╲
    "no violation" on a minor-safety case ─▶ awaiting_second_review ──specialist──▶ decided

The rule the product exists for: a minor-safety case can never be dismissed by one
person. "No violation" takes effect only when a *different* user with the child-safety
specialist role agrees; until then every copy stays restricted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from takedown.errors import Conflict, Forbidden, InvalidRequest


class CaseState(StrEnum):
    OPEN = "open"
    RESTRICTED = "restricted"  # restrict-first fired; awaiting review
    IN_REVIEW = "in_review"
    AWAITING_SECOND_REVIEW = "awaiting_second_review"
    DECIDED = "decided"
    APPEALED = "appealed"


class Outcome(StrEnum):
    VIOLATION = "violation"
    NO_VIOLATION = "no_violation"
    NEEDS_INFO = "needs_info"


class DecisionKind(StrEnum):
    FIRST = "first"
    SECOND_REVIEW = "second_review"
    APPEAL = "appeal"


class UserRole(StrEnum):
    ADMIN = "admin"
    MODERATOR = "moderator"
    CHILD_SAFETY_SPECIALIST = "child_safety_specialist"
    LEGAL = "legal"
    PLATFORM = "platform"


class ItemEffect(StrEnum):
    REMOVE = "remove"  # confirmed violation: every copy removed
    RESTORE = "restore"  # confirmed no violation: restrictions lifted


APPEAL_WINDOW = timedelta(days=183)  # DSA Art. 20(1): at least six months
MIN_REASONS = 10  # characters: "ok" is not a reason


@dataclass(frozen=True)
class CaseFacts:
    state: CaseState
    minor_safety: bool
    pending_dismissal_by: str | None  # user whose "no violation" awaits a second review
    deciders: frozenset[str]  # users who decided this case before (for appeals)
    appeal_open: bool = False  # an appeal is being decided: earlier deciders stand aside


@dataclass(frozen=True)
class DecisionInput:
    outcome: Outcome
    user_id: str
    role: UserRole
    reasons: str


@dataclass(frozen=True)
class DecisionEffect:
    kind: DecisionKind
    new_state: CaseState
    effective: bool  # False: recorded, but waiting for a second review
    effect: ItemEffect | None


def decide(case: CaseFacts, d: DecisionInput) -> DecisionEffect:
    """What a decision does to a case, or why it is refused."""
    if len((d.reasons or "").strip()) < MIN_REASONS:
        raise InvalidRequest(
            f"Write the reasons for the decision (at least {MIN_REASONS} characters); "
            "they are shown to the reporter and the uploader.",
            code="reasons_required",
        )
    if d.role not in (UserRole.MODERATOR, UserRole.CHILD_SAFETY_SPECIALIST, UserRole.ADMIN):
        raise Forbidden("Only moderators and specialists decide cases.", code="forbidden")
    if case.state is CaseState.DECIDED:
        raise Conflict(
            "This case is decided; it can be reopened only by an appeal.", code="case_decided"
        )
    if case.state is CaseState.AWAITING_SECOND_REVIEW:
        return _second_review(case, d)
    kind = DecisionKind.APPEAL if case.state is CaseState.APPEALED else DecisionKind.FIRST
    if kind is DecisionKind.APPEAL and d.user_id in case.deciders:
        raise Conflict(
            "An appeal is decided by someone who has not decided this case.", code="same_reviewer"
        )
    if d.outcome is Outcome.NEEDS_INFO:
        return DecisionEffect(
            kind,
            CaseState.IN_REVIEW if kind is DecisionKind.FIRST else CaseState.APPEALED,
            False,
            None,
        )
    if d.outcome is Outcome.VIOLATION:
        return DecisionEffect(kind, CaseState.DECIDED, True, ItemEffect.REMOVE)
    if case.minor_safety:  # "no violation" on a minor-safety case: never one person
        return DecisionEffect(kind, CaseState.AWAITING_SECOND_REVIEW, False, None)
    return DecisionEffect(kind, CaseState.DECIDED, True, ItemEffect.RESTORE)


def _second_review(case: CaseFacts, d: DecisionInput) -> DecisionEffect:
    if d.user_id == case.pending_dismissal_by or (case.appeal_open and d.user_id in case.deciders):
        raise Conflict(
            "The second review must be done by a different person.", code="same_reviewer"
        )
    if d.role is not UserRole.CHILD_SAFETY_SPECIALIST:
        raise Forbidden(
            "The second review of a minor-safety case needs a child-safety specialist.",
            code="specialist_required",
        )
    kind = DecisionKind.SECOND_REVIEW
    if d.outcome is Outcome.NEEDS_INFO:
        return DecisionEffect(kind, CaseState.AWAITING_SECOND_REVIEW, False, None)
    if d.outcome is Outcome.VIOLATION:
        return DecisionEffect(kind, CaseState.DECIDED, True, ItemEffect.REMOVE)
    return DecisionEffect(kind, CaseState.DECIDED, True, ItemEffect.RESTORE)


def check_appeal(state: CaseState, decided_at: datetime | None, now: datetime) -> None:
    if state is not CaseState.DECIDED or decided_at is None:
        raise Conflict("Only a decided case can be appealed.", code="not_appealable")
    if now > decided_at + APPEAL_WINDOW:
        raise Conflict(
            "The six-month window to appeal this decision has closed.", code="appeal_window_closed"
        )


class PublicStatus(StrEnum):
    """What the reporter sees: honest, and nothing internal."""

    RECEIVED = "received"
    CONTENT_RESTRICTED = "content_restricted"
    UNDER_REVIEW = "under_review"
    DECIDED = "decided"
    APPEAL_OPEN = "appeal_open"


PUBLIC_STATUS = {
    CaseState.OPEN: PublicStatus.RECEIVED,
    CaseState.RESTRICTED: PublicStatus.CONTENT_RESTRICTED,
    CaseState.IN_REVIEW: PublicStatus.UNDER_REVIEW,
    CaseState.AWAITING_SECOND_REVIEW: PublicStatus.UNDER_REVIEW,
    CaseState.DECIDED: PublicStatus.DECIDED,
    CaseState.APPEALED: PublicStatus.APPEAL_OPEN,
}

PUBLIC_TEXT = {
    PublicStatus.RECEIVED: "We have received your report and will review it.",
    PublicStatus.CONTENT_RESTRICTED: (
        "We have restricted the content you reported, and its known copies, while we "
        "review it. It is hidden from the public."
    ),
    PublicStatus.UNDER_REVIEW: "A reviewer is looking at your report.",
    PublicStatus.DECIDED: "We have made a decision on your report.",
    PublicStatus.APPEAL_OPEN: "An appeal against the decision is being reviewed.",
}
# A report that joins a case decided before it arrived (a new report of content already
# removed): the decision is not about this report, and no reviewer will look again.
DECIDED_BEFORE_REPORT_TEXT = (
    "We had already made a decision about this content before your report arrived."
)


def public_text(status: PublicStatus, *, decided_before_report: bool = False) -> str:
    """What the reporter reads about their report's status."""
    if status is PublicStatus.DECIDED and decided_before_report:
        return DECIDED_BEFORE_REPORT_TEXT
    return PUBLIC_TEXT[status]


# -- the review of each file: what a CyberTipline report says about it ------------------
class IndustryClassification(StrEnum):
    """The Tech Coalition's industry classification of apparent CSAM."""

    A1 = "A1"  # prepubescent minor, sex act
    A2 = "A2"  # prepubescent minor, lascivious exhibition
    B1 = "B1"  # pubescent minor, sex act
    B2 = "B2"  # pubescent minor, lascivious exhibition


class FileAnnotation(StrEnum):
    """NCMEC's ``fileAnnotations`` elements, in the schema's order."""

    ANIME_DRAWING_VIRTUAL_HENTAI = "animeDrawingVirtualHentai"
    POTENTIAL_MEME = "potentialMeme"
    VIRAL = "viral"
    POSSIBLE_SELF_PRODUCTION = "possibleSelfProduction"
    PHYSICAL_HARM = "physicalHarm"
    VIOLENCE_GORE = "violenceGore"
    BESTIALITY = "bestiality"
    LIVE_STREAMING = "liveStreaming"
    INFANT = "infant"
    GENERATIVE_AI = "generativeAi"


MAX_MEDIA_REVIEWS = 1000


@dataclass(frozen=True)
class MediaReview:
    """A reviewer's finding on one file of a case (by the media's public id)."""

    media_id: str
    classification: IndustryClassification | None
    annotations: tuple[FileAnnotation, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "media_id": self.media_id,
            "classification": self.classification.value if self.classification else None,
            "annotations": [a.value for a in self.annotations],
        }


def validate_media_review(
    outcome: Outcome, entries: list[dict[str, object]] | None
) -> tuple[MediaReview, ...]:
    """Classification and annotations belong to files the reviewer confirmed as
    violating (NCMEC: only files reported as relevant carry them), so they come only
    with a ``violation`` decision; each file once; values from the closed lists."""
    if not entries:
        return ()
    if outcome is not Outcome.VIOLATION:
        raise InvalidRequest(
            "Files are classified only in a 'violation' decision.",
            code="media_review_needs_violation",
        )
    if len(entries) > MAX_MEDIA_REVIEWS:
        raise InvalidRequest(
            f"At most {MAX_MEDIA_REVIEWS} files per decision.", code="invalid_request"
        )
    seen: set[str] = set()
    out = []
    for entry in entries:
        media_id = str(entry.get("media_id") or "").strip()
        if not media_id:
            raise InvalidRequest("Each file review names its media_id.", code="invalid_request")
        if media_id in seen:
            raise InvalidRequest(
                f"Media {media_id[:40]!r} is reviewed twice in one decision.",
                code="duplicate_media_review",
            )
        seen.add(media_id)
        raw_class = entry.get("classification")
        try:
            classification = IndustryClassification(str(raw_class)) if raw_class else None
        except ValueError:
            raise InvalidRequest(
                "classification is A1, A2, B1 or B2.", code="invalid_classification"
            ) from None
        raw_notes = entry.get("annotations") or []
        if not isinstance(raw_notes, list):
            raise InvalidRequest("annotations is a list.", code="invalid_annotation")
        try:
            notes = {FileAnnotation(str(a)) for a in raw_notes}
        except ValueError:
            raise InvalidRequest(
                "Unknown file annotation; use NCMEC's names: "
                + ", ".join(a.value for a in FileAnnotation),
                code="invalid_annotation",
            ) from None
        ordered = tuple(a for a in FileAnnotation if a in notes)
        out.append(MediaReview(media_id, classification, ordered))
    return tuple(out)
