"""Statements of reasons (DSA Article 17) for the affected user, one per action.

The platform passes the statement to the owner of the affected content. Its content is
what Art. 17(3) lists: the measure and its territorial scope and duration, the facts
relied on (a notice or the platform's own initiative), whether automated means were
used to detect or decide, the legal or contractual ground, and the redress available.
Pure function: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from takedown.domain import dsa_lists as lists
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
class TerritorialScope:
    """Where a measure applies, said once for both readers: ``sentence`` for the
    person the statement is given to, ``countries`` (the EU/EEA states among them) for
    the Transparency Database's ``territorial_scope``. Both come from one setting,
    ``TAKEDOWN_DSA_TERRITORIAL_SCOPE``, through ``territorial_scope``, so they cannot
    say different things (issue #23, point 9)."""

    sentence: str
    countries: tuple[str, ...]


WORLDWIDE = TerritorialScope(
    "Worldwide: everywhere the service is offered, including every EU and EEA member state.",
    lists.EU_EEA,
)


def territorial_scope(setting: str) -> TerritorialScope:
    """``""`` or ``worldwide`` (the default: the platform acts everywhere), ``eea``,
    ``eu``, or comma-separated ISO codes of EU/EEA states (``DE,AT``). Raises
    ValueError for anything else: a code outside the EU/EEA could be told to the user
    but not sent to the database, and the two must agree."""
    value = setting.strip().lower()
    if value in ("", "worldwide"):
        return WORLDWIDE
    if value == "eea":
        return TerritorialScope(
            "The European Economic Area: every EU member state, Iceland, Liechtenstein and Norway.",
            lists.EU_EEA,
        )
    if value == "eu":
        return TerritorialScope("The European Union: every EU member state.", lists.EU)
    codes = sorted({c.strip().upper() for c in setting.split(",") if c.strip()})
    unknown = [c for c in codes if c not in lists.EU_EEA]
    if unknown:
        raise ValueError(
            f"not EU/EEA country codes: {', '.join(unknown)} (use worldwide, eea, eu or "
            "ISO codes of EU/EEA states)"
        )
    return TerritorialScope("These countries: " + ", ".join(codes) + ".", tuple(codes))


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
    # The EU/EEA states of ``territorial_scope`` (what the Transparency Database gets).
    # Statements written before this field existed said "Worldwide.": all of them.
    territorial_scope_countries: tuple[str, ...] = field(default=lists.EU_EEA)

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
    scope: TerritorialScope = WORLDWIDE,
) -> StatementOfReasons:
    """``action`` is restrict, remove or restore; ``reason`` why the action was taken
    (restrict_first, hash_match, confirmed_violation, no_violation, appeal_upheld,
    copy_of_…)."""
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
    elif reason == "appeal_upheld":
        measure = "Removal reversed on appeal: the content is visible and monetized again."
        duration = "Not applicable."
        automated = "not_automated"
    else:
        measure = "Restriction lifted: the content is visible and monetized again."
        duration = "Not applicable."
        automated = "not_automated"
    if reason == "appeal_upheld":
        facts = (
            "An appeal was upheld: a second reviewer found that the content does not "
            "violate the rules, and the earlier decision is reversed."
        )
    elif reason in ("hash_match",) or hash_match:
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
        territorial_scope=scope.sentence,
        duration=duration,
        facts=facts,
        automated_detection=hash_match or reason == "hash_match",
        automated_decision=automated,
        ground=(ground or f"Violation of the platform's terms ({policy or 'content policy'})."),
        ground_type="illegal_content" if ground else "incompatible_content",
        redress=REDRESS,
        territorial_scope_countries=scope.countries,
    )


# -- the same statement for the DSA Transparency Database (Art. 24(5)) --------------------
# What goes there must carry no personal data: no item or account ids, no URLs, no
# names, and none of the reviewer's free text (it may quote the content or name people).
# The facts are the fixed sentences above; the puid is the platform's own opaque id.
# Every value comes from domain/dsa_lists.py (the lists in force since 2025-07-01).

_DB_VISIBILITY = {
    "restrict": "DECISION_VISIBILITY_CONTENT_DISABLED",
    "remove": "DECISION_VISIBILITY_CONTENT_REMOVED",
}
_DB_MONETARY = {"demonetize": "DECISION_MONETARY_SUSPENSION"}
_DB_ACCOUNT = {
    "suspend": "DECISION_ACCOUNT_SUSPENDED",
    "terminate": "DECISION_ACCOUNT_TERMINATED",
}
_DB_AUTOMATED = {
    "fully": "AUTOMATED_DECISION_FULLY",
    "partially": "AUTOMATED_DECISION_PARTIALLY",
    "not_automated": "AUTOMATED_DECISION_NOT_AUTOMATED",
}
# Our categories, most serious first, as the database's category and keyword. NCII is
# cyber violence with non-consensual (intimate) material sharing ("excluding content
# depicting minors": material of a minor is CSAM, which comes first); everything else
# Takedown handles is a violation of the platform's terms (no keyword is required).
DB_CATEGORY: dict[Category, tuple[str, str | None]] = {
    Category.CSAM: (
        "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
        "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
    ),
    Category.MINOR_EXPLOITATION: (
        "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
        "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
    ),
    Category.NCII: ("STATEMENT_CATEGORY_CYBER_VIOLENCE", "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING"),
    Category.OTHER: ("STATEMENT_CATEGORY_OTHER_VIOLATION_TC", None),
}
_SEVERITY = (Category.CSAM, Category.MINOR_EXPLOITATION, Category.NCII, Category.OTHER)
_DB_CONTENT_TYPE = {
    "image": "CONTENT_TYPE_IMAGE",
    "video": "CONTENT_TYPE_VIDEO",
    "gif": "CONTENT_TYPE_IMAGE",
}
MAX_FACTS = lists.MAX_LENGTH["decision_facts"]
MAX_EXPLANATION = lists.MAX_LENGTH["illegal_content_explanation"]
MAX_GROUND = lists.MAX_LENGTH["illegal_content_legal_ground"]


def restricts(action: str) -> bool:
    """Art. 17 statements are owed for restrictions; restoring or warning is none."""
    return action in _DB_VISIBILITY or action in _DB_MONETARY or action in _DB_ACCOUNT


def db_categories(categories: set[Category]) -> dict[str, object]:
    """``category``, ``category_addition`` and ``category_specification`` for a case's
    categories: the most serious one is the category, the others' categories are
    additions, and each has its keyword."""
    ordered = [c for c in _SEVERITY if c in categories] or [Category.OTHER]
    if len(ordered) > 1 and Category.OTHER in ordered:
        ordered.remove(Category.OTHER)  # "other" adds nothing to an illegal category
    main = DB_CATEGORY[ordered[0]][0]
    additions = sorted({DB_CATEGORY[c][0] for c in ordered} - {main})
    keywords = sorted({k for c in ordered if (k := DB_CATEGORY[c][1])})
    out: dict[str, object] = {"category": main}
    if additions:
        out["category_addition"] = additions
    if keywords:
        out["category_specification"] = keywords
    return out


def transparency_db_statement(
    statement: StatementOfReasons,
    *,
    puid: str,
    action: str,
    categories: set[Category],
    media_types: set[str],
    content_date: str,
    application_date: str,
    source_type: str,
) -> dict[str, object]:
    """The JSON body of ``POST /api/v1/statement`` (or one element of
    ``/api/v1/statements``). ``action``: restrict, remove, demonetize (content) or
    suspend, terminate (account). Dates are ``YYYY-MM-DD``; ``source_type`` one of
    ``dsa_lists.SOURCE_TYPES``. The territorial scope is the statement's own
    (``territorial_scope_countries``): what the user was told. Check the result with
    ``dsa_lists.validate_statement`` before sending it."""
    if not restricts(action):
        raise ValueError(f"no statement of reasons for {action!r}")
    body: dict[str, object] = {}
    if action in _DB_VISIBILITY:
        body["decision_visibility"] = [_DB_VISIBILITY[action]]
    if action in _DB_MONETARY:
        body["decision_monetary"] = _DB_MONETARY[action]
    if action in _DB_ACCOUNT:
        body["decision_account"] = _DB_ACCOUNT[action]
    explanation = statement.facts[:MAX_EXPLANATION]
    illegal = any(
        c in categories for c in (Category.CSAM, Category.MINOR_EXPLOITATION, Category.NCII)
    )
    if statement.ground_type == "illegal_content":
        body["decision_ground"] = "DECISION_GROUND_ILLEGAL_CONTENT"
        body["illegal_content_legal_ground"] = statement.ground[:MAX_GROUND]
        body["illegal_content_explanation"] = explanation
    else:
        body["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        body["incompatible_content_ground"] = statement.ground[:MAX_GROUND]
        body["incompatible_content_explanation"] = explanation
        body["incompatible_content_illegal"] = "Yes" if illegal else "No"
    body.update(db_categories(categories))
    if action in _DB_ACCOUNT:
        body["content_type"] = ["CONTENT_TYPE_OTHER"]
        body["content_type_other"] = "User account"
    else:
        types = sorted({_DB_CONTENT_TYPE.get(t, "CONTENT_TYPE_OTHER") for t in media_types})
        body["content_type"] = types or ["CONTENT_TYPE_TEXT"]
        if "CONTENT_TYPE_OTHER" in types:
            body["content_type_other"] = "Media"
    body.update(
        {
            "content_date": content_date,
            "application_date": application_date,
            "decision_facts": statement.facts[:MAX_FACTS],
            "source_type": source_type,
            "automated_detection": "Yes" if statement.automated_detection else "No",
            "automated_decision": _DB_AUTOMATED[statement.automated_decision],
            "territorial_scope": sorted(statement.territorial_scope_countries),
            "puid": puid,
        }
    )
    return body
