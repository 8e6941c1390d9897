"""The DSA Transparency Database's lists and rules, in one place, and a validator.

**Version.** The submission schema in force since **1 July 2025** (the Commission's
"API v2" lists, aligned with the Implementing Regulation on transparency reporting).
Checked on **2026-06-24** against the Commission's own sources:

- the API documentation, https://transparency.dsa.ec.europa.eu/page/api-documentation
  (its changelog table lists what changed on 1 July 2025),
- the additional explanation of the attributes (which keywords belong to which
  category), https://transparency.dsa.ec.europa.eu/page/additional-explanation-for-statement-attributes
- the database's source, https://github.com/digital-services-act/transparency-database
  (``app/Models/Statement.php`` holds the enumerations, ``StatementStoreRequest.php``
  and ``GroupedSubmissionsService.php`` the validation rules of the single and batch
  endpoints).

When the Commission changes a list, change it here (and ``LIST_VERSION``); the
validator, the mapping in ``domain/statements.py`` and the tests follow.

REQUIREMENTS.md (DSA, Art. 24(5)) names the required fields this module keeps, and
category values of the older lists (``STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR``,
``KEYWORD_IMAGE_BASED_SEXUAL_ABUSE``): the database refuses those since 1 July 2025,
and every statement sent with them was answered 422 (issue #23); ``RETIRED`` maps
them to today's values.

``validate_statement`` is stricter than the database in three ways, on purpose: a
keyword must belong to the statement's category (or an additional category), fields
the database would silently drop (unknown ones, the other ground's fields) are refused,
and free text must not carry an e-mail address or a web address (Art. 24(5): no
personal data). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import date

LIST_VERSION = "2025-07-01"  # the schema the lists below come from
CHECKED_ON = "2026-06-24"  # when they were last compared with the Commission's sources
SOURCE = "https://transparency.dsa.ec.europa.eu/page/api-documentation"

BATCH_MAX = 100  # POST /api/v1/statements takes 1 to 100 statements a call

# -- categories and the keywords (category_specification) under each -------------------
CATEGORIES: dict[str, tuple[str, ...]] = {
    "STATEMENT_CATEGORY_ANIMAL_WELFARE": ("KEYWORD_ANIMAL_HARM", "KEYWORD_UNLAWFUL_SALE_ANIMALS"),
    "STATEMENT_CATEGORY_CONSUMER_INFORMATION": (
        "KEYWORD_HIDDEN_ADVERTISEMENT",
        "KEYWORD_INSUFFICIENT_INFORMATION_ON_TRADERS",
        "KEYWORD_MISLEADING_INFO_GOODS_SERVICES",
        "KEYWORD_MISLEADING_INFO_CONSUMER_RIGHTS",
        "KEYWORD_NONCOMPLIANCE_PRICING",
    ),
    "STATEMENT_CATEGORY_CYBER_VIOLENCE": (
        "KEYWORD_CYBER_BULLYING_INTIMIDATION",
        "KEYWORD_CYBER_HARASSMENT",
        "KEYWORD_CYBER_INCITEMENT",
        "KEYWORD_CYBER_STALKING",
        "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
        "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE",
    ),
    "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN": (
        "KEYWORD_BULLYING_AGAINST_GIRLS",
        "KEYWORD_CYBER_HARASSMENT_AGAINST_WOMEN",
        "KEYWORD_CYBER_STALKING_AGAINST_WOMEN",
        "KEYWORD_FEMALE_GENDERED_DISINFORMATION",
        "KEYWORD_INCITEMENT_AGAINST_WOMEN",
        "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING_AGAINST_WOMEN",
        "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE_AGAINST_WOMEN",
    ),
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS": (
        "KEYWORD_BIOMETRIC_DATA_BREACH",
        "KEYWORD_DATA_FALSIFICATION",
        "KEYWORD_MISSING_PROCESSING_GROUND",
        "KEYWORD_RIGHT_TO_BE_FORGOTTEN",
    ),
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH": (
        "KEYWORD_DEFAMATION",
        "KEYWORD_DISCRIMINATION",
        "KEYWORD_HATE_SPEECH",
    ),
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS": (
        "KEYWORD_COPYRIGHT_INFRINGEMENT",
        "KEYWORD_DESIGN_INFRINGEMENT",
        "KEYWORD_GEOGRAPHIC_INDICATIONS_INFRINGEMENT",
        "KEYWORD_PATENT_INFRINGEMENT",
        "KEYWORD_TRADE_SECRET_INFRINGEMENT",
        "KEYWORD_TRADEMARK_INFRINGEMENT",
    ),
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS": (
        "KEYWORD_MISINFORMATION_DISINFORMATION",
        "KEYWORD_VIOLATION_EU_LAW",
        "KEYWORD_VIOLATION_NATIONAL_LAW",
    ),
    "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE": (),
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC": (
        "KEYWORD_ADULT_SEXUAL_MATERIAL",
        "KEYWORD_AGE_SPECIFIC_RESTRICTIONS",
        "KEYWORD_GEOGRAPHICAL_REQUIREMENTS",
        "KEYWORD_GOODS_SERVICES_NOT_PERMITTED",
        "KEYWORD_LANGUAGE_REQUIREMENTS",
        "KEYWORD_NUDITY",
    ),
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS": (
        "KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS",
        "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",
        "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL_DEEPFAKE",
        "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS",
        "KEYWORD_UNSAFE_CHALLENGES",
    ),
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY": (
        "KEYWORD_ILLEGAL_ORGANIZATIONS",
        "KEYWORD_RISK_ENVIRONMENTAL_DAMAGE",
        "KEYWORD_RISK_PUBLIC_HEALTH",
        "KEYWORD_TERRORIST_CONTENT",
    ),
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD": (
        "KEYWORD_IMPERSONATION_ACCOUNT_HIJACKING",
        "KEYWORD_INAUTHENTIC_ACCOUNTS",
        "KEYWORD_INAUTHENTIC_LISTINGS",
        "KEYWORD_INAUTHENTIC_USER_REVIEWS",
        "KEYWORD_PHISHING",
        "KEYWORD_PYRAMID_SCHEMES",
    ),
    "STATEMENT_CATEGORY_SELF_HARM": (
        "KEYWORD_CONTENT_PROMOTING_EATING_DISORDERS",
        "KEYWORD_SELF_MUTILATION",
        "KEYWORD_SUICIDE",
    ),
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS": (
        "KEYWORD_PROHIBITED_PRODUCTS",
        "KEYWORD_UNSAFE_PRODUCTS",
    ),
    "STATEMENT_CATEGORY_VIOLENCE": (
        "KEYWORD_COORDINATED_HARM",
        "KEYWORD_INCITEMENT_VIOLENCE_HATRED",
        "KEYWORD_HUMAN_EXPLOITATION",
        "KEYWORD_HUMAN_TRAFFICKING",
        "KEYWORD_TRAFFICKING_WOMEN_GIRLS",
    ),
}
KEYWORD_OTHER = "KEYWORD_OTHER"  # "not captured by any other keyword": any category
KEYWORDS = frozenset(k for ks in CATEGORIES.values() for k in ks) | {KEYWORD_OTHER}

# Values the database took before 1 July 2025 and refuses since (its changelog table).
RETIRED = {
    "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
    "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_UNSAFE_AND_ILLEGAL_PRODUCTS": (
        "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS"
    ),
    "KEYWORD_IMAGE_BASED_SEXUAL_ABUSE": "KEYWORD_NON_CONSENSUAL_IMAGE_SHARING",
    "KEYWORD_GENDER_BASED_VIOLENCE": "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "KEYWORD_ONLINE_BULLYING_INTIMIDATION": "KEYWORD_CYBER_BULLYING_INTIMIDATION",
    "KEYWORD_NON_CONSENSUAL_ITEMS_DEEPFAKE": "KEYWORD_NON_CONSENSUAL_MATERIAL_DEEPFAKE",
    "KEYWORD_INSUFFICIENT_INFORMATION_TRADERS": "KEYWORD_INSUFFICIENT_INFORMATION_ON_TRADERS",
    "KEYWORD_DISINFORMATION": "KEYWORD_MISINFORMATION_DISINFORMATION",
    "KEYWORD_MISINFORMATION": "KEYWORD_MISINFORMATION_DISINFORMATION",
    "KEYWORD_FOREIGN_INFORMATION_MANIPULATION": "KEYWORD_MISINFORMATION_DISINFORMATION",
    "KEYWORD_REGULATED_GOODS_SERVICES": "KEYWORD_PROHIBITED_PRODUCTS",
    "KEYWORD_DANGEROUS_TOYS": "KEYWORD_UNSAFE_PRODUCTS",
}

# -- the other enumerations ----------------------------------------------------------
DECISION_VISIBILITIES = frozenset(
    {
        "DECISION_VISIBILITY_CONTENT_REMOVED",
        "DECISION_VISIBILITY_CONTENT_DISABLED",
        "DECISION_VISIBILITY_CONTENT_DEMOTED",
        "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
        "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
        "DECISION_VISIBILITY_CONTENT_LABELLED",
        "DECISION_VISIBILITY_OTHER",
    }
)
DECISION_MONETARIES = frozenset(
    {"DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER"}
)
DECISION_PROVISIONS = frozenset(
    {
        "DECISION_PROVISION_PARTIAL_SUSPENSION",
        "DECISION_PROVISION_TOTAL_SUSPENSION",
        "DECISION_PROVISION_PARTIAL_TERMINATION",
        "DECISION_PROVISION_TOTAL_TERMINATION",
    }
)
DECISION_ACCOUNTS = frozenset({"DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED"})
ACCOUNT_TYPES = frozenset({"ACCOUNT_TYPE_BUSINESS", "ACCOUNT_TYPE_PRIVATE"})
DECISION_GROUNDS = frozenset(
    {"DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"}
)
CONTENT_TYPES = frozenset(
    {
        "CONTENT_TYPE_APP",
        "CONTENT_TYPE_AUDIO",
        "CONTENT_TYPE_IMAGE",
        "CONTENT_TYPE_PRODUCT",
        "CONTENT_TYPE_SYNTHETIC_MEDIA",
        "CONTENT_TYPE_TEXT",
        "CONTENT_TYPE_VIDEO",
        "CONTENT_TYPE_OTHER",
    }
)
SOURCE_TYPES = frozenset(
    {
        "SOURCE_ARTICLE_16",
        "SOURCE_TRUSTED_FLAGGER",
        "SOURCE_TYPE_OTHER_NOTIFICATION",
        "SOURCE_VOLUNTARY",
    }
)
YES_NO = frozenset({"Yes", "No"})  # automated_detection, incompatible_content_illegal
AUTOMATED_DECISIONS = frozenset(
    {
        "AUTOMATED_DECISION_FULLY",
        "AUTOMATED_DECISION_PARTIALLY",
        "AUTOMATED_DECISION_NOT_AUTOMATED",
    }
)
EU = (
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
)
EU_EEA = tuple(sorted((*EU, "IS", "LI", "NO")))  # territorial_scope takes these only

# -- free-text limits, dates, the puid ------------------------------------------------
MAX_LENGTH = {
    "decision_visibility_other": 500,
    "decision_monetary_other": 500,
    "decision_ground_reference_url": 500,
    "illegal_content_legal_ground": 500,
    "illegal_content_explanation": 2000,
    "incompatible_content_ground": 500,
    "incompatible_content_explanation": 2000,
    "content_type_other": 500,
    "category_specification_other": 500,
    "decision_facts": 5000,
    "source_identity": 500,
    "puid": 500,
}
FREE_TEXT = tuple(k for k in MAX_LENGTH if k not in ("puid", "decision_ground_reference_url"))
DATE_RANGES = {  # (earliest, latest), inclusive
    "content_date": (date(2000, 1, 1), date(2038, 1, 1)),
    "application_date": (date(2020, 1, 1), date(2038, 1, 1)),
    "end_date_account_restriction": (None, date(2038, 1, 1)),
    "end_date_monetary_restriction": (None, date(2038, 1, 1)),
    "end_date_service_restriction": (None, date(2038, 1, 1)),
    "end_date_visibility_restriction": (None, date(2038, 1, 1)),
}
PUID = re.compile(r"[A-Za-z0-9_-]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[A-Za-z]{2,}")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+")
_LANGUAGE = re.compile(r"[A-Z]{2}")  # ISO 639-1, upper case

REQUIRED = (
    "decision_ground",
    "category",
    "content_type",
    "content_date",
    "application_date",
    "decision_facts",
    "source_type",
    "automated_detection",
    "automated_decision",
    "territorial_scope",  # the documentation calls it required (the server lets it be null)
    "puid",
)
DECISIONS = ("decision_visibility", "decision_monetary", "decision_provision", "decision_account")
FIELDS = frozenset(
    {
        *REQUIRED,
        *DECISIONS,
        *MAX_LENGTH,
        *DATE_RANGES,
        "account_type",
        "category_addition",
        "category_specification",
        "incompatible_content_illegal",
        "content_language",
        "content_id",
    }
)
ILLEGAL_FIELDS = ("illegal_content_legal_ground", "illegal_content_explanation")
INCOMPATIBLE_FIELDS = (
    "incompatible_content_ground",
    "incompatible_content_explanation",
    "incompatible_content_illegal",
)

Errors = dict[str, list[str]]
Bad = Callable[[str, str], None]


def validate_statement(body: Mapping[str, object]) -> Errors:
    """What is wrong with a statement, field by field (empty when nothing is)."""
    errors: Errors = {}

    def bad(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name in sorted(set(body) - FIELDS):
        bad(name, "Not a field of the statement API (and may carry personal data).")
    for name in REQUIRED:
        if body.get(name) in (None, "", []):
            bad(name, "Required.")
    if not any(body.get(d) not in (None, []) for d in DECISIONS):
        bad("decision_visibility", "One of " + ", ".join(DECISIONS) + " is required.")

    _one_of(body, "decision_monetary", DECISION_MONETARIES, bad)
    _one_of(body, "decision_provision", DECISION_PROVISIONS, bad)
    _one_of(body, "decision_account", DECISION_ACCOUNTS, bad)
    _one_of(body, "account_type", ACCOUNT_TYPES, bad)
    _one_of(body, "decision_ground", DECISION_GROUNDS, bad)
    _one_of(body, "source_type", SOURCE_TYPES, bad)
    _one_of(body, "automated_detection", YES_NO, bad)
    _one_of(body, "automated_decision", AUTOMATED_DECISIONS, bad)
    _one_of(body, "incompatible_content_illegal", YES_NO, bad)
    _one_of(body, "category", CATEGORIES, bad)
    visibility = _list_of(body, "decision_visibility", DECISION_VISIBILITIES, bad)
    content = _list_of(body, "content_type", CONTENT_TYPES, bad)
    additions = _list_of(body, "category_addition", CATEGORIES, bad)
    keywords = _list_of(body, "category_specification", KEYWORDS, bad)
    _list_of(body, "territorial_scope", EU_EEA, bad)

    # Conditional fields: required with their value, absent without it.
    _other(body, "decision_visibility_other", "DECISION_VISIBILITY_OTHER" in visibility, bad)
    _other(
        body,
        "decision_monetary_other",
        body.get("decision_monetary") == "DECISION_MONETARY_OTHER",
        bad,
    )
    _other(body, "content_type_other", "CONTENT_TYPE_OTHER" in content, bad)
    if body.get("category_specification_other") not in (None, "") and (
        KEYWORD_OTHER not in keywords
    ):
        bad("category_specification_other", f"Only with {KEYWORD_OTHER} among the keywords.")
    ground = body.get("decision_ground")
    for fields, needed in (
        (ILLEGAL_FIELDS, ground == "DECISION_GROUND_ILLEGAL_CONTENT"),
        (INCOMPATIBLE_FIELDS, ground == "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ):
        for name in fields:
            given = body.get(name) not in (None, "")
            if needed and not given and name != "incompatible_content_illegal":
                bad(name, f"Required when decision_ground is {ground}.")
            elif given and not needed:
                bad(name, f"Only with decision_ground {ground} (the database drops it).")
    if body.get("source_type") == "SOURCE_VOLUNTARY" and body.get("source_identity"):
        bad("source_identity", "Not with SOURCE_VOLUNTARY.")

    # Keywords belong to the category (or an additional category).
    category = body.get("category")
    allowed = {k for c in (category, *additions) for k in CATEGORIES.get(str(c), ())}
    for k in keywords:
        if k in KEYWORDS and k != KEYWORD_OTHER and k not in allowed:
            bad("category_specification", f"{k} is not a keyword of {category}.")

    # Text: lengths, and no personal data (an e-mail or web address) in free text.
    for name, limit in MAX_LENGTH.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            bad(name, "Must be text.")
        elif len(value) > limit:
            bad(name, f"At most {limit} characters ({len(value)} given).")
        elif name in FREE_TEXT and (_EMAIL.search(value) or _URL.search(value)):
            bad(name, "Carries an e-mail or web address: no personal data may be sent.")
    puid = body.get("puid")
    if isinstance(puid, str) and puid and not PUID.fullmatch(puid):
        bad("puid", "Letters, digits, '-' and '_' only.")
    language = body.get("content_language")
    if language is not None and not (isinstance(language, str) and _LANGUAGE.fullmatch(language)):
        bad("content_language", "An upper-case ISO 639-1 code (e.g. EN).")

    # Dates: YYYY-MM-DD within the documented ranges; an end date not before the start.
    dates: dict[str, date] = {}
    for name, (earliest, latest) in DATE_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        parsed = _date(value)
        if parsed is None:
            bad(name, "A date in the form YYYY-MM-DD.")
        elif (earliest and parsed < earliest) or parsed > latest:
            bad(name, f"Out of range ({earliest or 'any'} to {latest}).")
        else:
            dates[name] = parsed
    start = dates.get("application_date")
    for name in DATE_RANGES:
        if name.startswith("end_date_") and start and name in dates and dates[name] < start:
            bad(name, "Before application_date.")
    return errors


def _retired(value: object) -> str:
    new = RETIRED.get(str(value))
    return f" It was retired on {LIST_VERSION}; today's value is {new}." if new else ""


def _one_of(body: Mapping[str, object], name: str, allowed: Collection[str], bad: Bad) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or value not in allowed):
        bad(name, f"{value!r} is not one of the allowed values." + _retired(value))


def _list_of(
    body: Mapping[str, object], name: str, allowed: Collection[str], bad: Bad
) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        bad(name, "Must be a list of values.")
        return []
    for v in value:
        if v not in allowed:
            bad(name, f"{v!r} is not one of the allowed values." + _retired(v))
    if len(set(value)) != len(value):
        bad(name, "A value is given twice.")
    return list(value)


def _other(body: Mapping[str, object], name: str, needed: bool, bad: Bad) -> None:
    given = body.get(name) not in (None, "")
    if needed and not given:
        bad(name, "Required with the 'other' value.")
    elif given and not needed:
        bad(name, "Only with the 'other' value.")


def _date(value: object) -> date | None:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
