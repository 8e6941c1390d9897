"""Statements of reasons (DSA Article 17) for the affected user, one per action.

The platform passes the statement to the owner of the affected content. Its content is
what Art. 17(3) lists: the measure and its territorial scope and duration, the facts
relied on (a notice or the platform's own initiative), whether automated means were
used to detect or decide, the legal or contractual ground, and the redress available.
Pure function: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from takedown.domain.reports import Category

# Grounds per category. Illegal content names the law; "other" is a terms-of-service
# matter (incompatible content) unless a reviewer names a policy.
_ILLEGAL_GROUND = {
    Category.CSAM: "Child sexual abuse material: illegal under 18 U.S.C. 2252/2252A and "
    "EU Directive 2011/93/EU art. 5.",
    Category.MINOR_EXPLOITATION: "Sexual exploitation of a minor (sextortion, grooming): "
    "illegal under 18 U.S.C. 2422(b) and EU Directive 2011/93/EU art. 6.",
    Category.NCII: "Non-consensual intimate imagery: removable under the TAKE IT DOWN Act "
    "(47 U.S.C. 223a) and the platform's terms.",
}

REDRESS = (
    "You can appeal this decision through the platform within six months, free of "
    "charge (DSA art. 20); you may also use a certified out-of-court dispute settlement "
    "body (art. 21) or the courts."
)


@dataclass(frozen=True)
class StatementOfReasons:
    measure: str
    territorial_scope: str
    duration: str
    facts: str
    automated_detection: bool
    automated_decision: str  # fully | partially | not_automated (DSA database terms)
    ground: str
    ground_type: str  # illegal_content | incompatible_content
    redress: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def statement_for(
    action: str,
    categories: set[Category],
    *,
    reason: str,
    decision_reasons: str | None = None,
    policy: str | None = None,
    hash_match: bool = False,
) -> StatementOfReasons:
    """``action`` is restrict, remove or restore; ``reason`` why the action was taken
    (restrict_first, hash_match, confirmed_violation, no_violation, copy_of_…)."""
    top = next(
        (c for c in (Category.CSAM, Category.MINOR_EXPLOITATION, Category.NCII) if c in categories),
        None,
    )
    ground = _ILLEGAL_GROUND.get(top) if top else None
    if action == "restrict":
        measure = (
            "Visibility restricted (hidden from the public) and monetization "
            "paused while the content is reviewed."
        )
        duration = "Until the review decides; you will receive the decision."
        automated = "fully"  # restrict-first applies automatically to such reports
    elif action == "demonetize":
        measure = "Monetization paused while the content is reviewed; it stays visible."
        duration = "Until the review decides; you will receive the decision."
        automated = "fully"
    elif action == "remove":
        measure = "Content removed and monetization stopped."
        duration = "Permanent, unless reversed on appeal."
        automated = "not_automated"  # a person confirmed the violation
    else:
        measure = "Restriction lifted: the content is visible and monetized again."
        duration = "Not applicable."
        automated = "not_automated"
    if reason in ("hash_match",) or hash_match:
        facts = (
            "The content matched a list of known material (a hash match) and was "
            "restricted pending human review."
        )
    elif reason.startswith("copy_of"):
        facts = (
            "The content is a copy (repost, quote, same file or near-duplicate) of "
            "material already under review or confirmed."
        )
    elif reason in ("confirmed_violation", "no_violation"):
        facts = "A reviewer examined the content after a notice or a match."
    else:
        facts = "A notice from a third party reported this content."
    if decision_reasons:
        facts += f" Reviewer's reasons: {decision_reasons}"
    return StatementOfReasons(
        measure=measure,
        territorial_scope="Worldwide.",
        duration=duration,
        facts=facts,
        automated_detection=hash_match or reason == "hash_match",
        automated_decision=automated,
        ground=(ground or f"Violation of the platform's terms ({policy or 'content policy'})."),
        ground_type="illegal_content" if ground else "incompatible_content",
        redress=REDRESS,
    )
