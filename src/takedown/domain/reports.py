"""What a report is, who may file it, and when it is complete. Pure rules, no I/O.

Two laws shape the fields (see ../shared/docs/REQUIREMENTS.md):

- **DSA Article 16** (notices): an explanation, the exact location, the notifier's
  name and email — *optional* for child sexual abuse offences, so that nobody is
  deterred from reporting it — and a good-faith statement.
- **TAKE IT DOWN Act** (removal requests for intimate imagery, from the person depicted
  or someone authorised to act for them): a signature, enough to identify and locate
  the depiction, a good-faith statement that it is not consensual, and contact
  information. A *valid* request starts the 48-hour removal clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from takedown.errors import InvalidRequest
from takedown.signals import MD5, PDQ, VPDQ, signal_type


class Category(StrEnum):
    CSAM = "csam"  # child sexual abuse material
    MINOR_EXPLOITATION = "minor_sexual_exploitation"  # sextortion, grooming, enticement
    NCII = "ncii"  # non-consensual intimate imagery of an adult
    OTHER = "other"


MINOR_SAFETY = frozenset({Category.CSAM, Category.MINOR_EXPLOITATION})
# Categories where a request from the person depicted is a TAKE IT DOWN removal request.
INTIMATE_IMAGERY = frozenset({Category.CSAM, Category.MINOR_EXPLOITATION, Category.NCII})


class ReporterRole(StrEnum):
    PERSON_DEPICTED = "person_depicted"
    PARENT_GUARDIAN = "parent_guardian"
    USER = "user"
    TRUSTED_FLAGGER = "trusted_flagger"  # DSA Art. 22: registered, priority
    LAW_ENFORCEMENT = "law_enforcement"


# Roles that only an authenticated channel (an API key registered for it) may claim.
AUTHENTICATED_ROLES = frozenset({ReporterRole.TRUSTED_FLAGGER, ReporterRole.LAW_ENFORCEMENT})
# Roles that can make a TAKE IT DOWN request: the person depicted, or someone
# authorised to act for them.
VICTIM_ROLES = frozenset({ReporterRole.PERSON_DEPICTED, ReporterRole.PARENT_GUARDIAN})

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{2,48}$")
MAX_AGE = 120
_URL = re.compile(r"^https?://[^\s]{3,2000}$", re.IGNORECASE)
MAX_TEXT = 10_000
MAX_LOCATIONS = 100
MAX_HASHED_FILES = 20
DIHEDRAL_VARIANTS = 8


@dataclass(frozen=True)
class ReportedHash:
    """One file hashed on the reporter's own device (the file itself is never sent):
    the MD5 of its bytes and its PDQ hash with quality and its 8 dihedral variants
    (rotations and mirror images, first = the original), as the browser computes them."""

    md5: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    dihedral: tuple[str, ...] = ()
    # Hashes of other signal types (plug-ins), as (type name, value): matched against
    # the banks; registered copies are found by MD5 and PDQ.
    signals: tuple[tuple[str, str], ...] = ()

    @property
    def pdq_variants(self) -> tuple[str, ...]:
        """Every PDQ to search with: the variants if sent, else the one hash."""
        if self.dihedral:
            return self.dihedral
        return (self.pdq,) if self.pdq else ()

    def to_json(self) -> dict[str, object]:
        return {
            "md5": self.md5,
            "pdq": self.pdq,
            "pdq_quality": self.pdq_quality,
            "dihedral": list(self.dihedral),
        } | ({"signals": dict(self.signals)} if self.signals else {})


@dataclass(frozen=True)
class ReportInput:
    """A report as submitted, before validation (API body or web form)."""

    category: str
    reporter_role: str
    explanation: str = ""
    urls: Sequence[str] = ()
    item_ids: Sequence[str] = ()  # the platform's item ids
    reporter_name: str | None = None
    reporter_email: str | None = None
    contact: str | None = None  # other contact information (phone, postal)
    signature: str | None = None  # electronic signature: the signer's full name
    good_faith: bool = False  # "I believe in good faith that this information is accurate"
    not_consensual: bool = False  # TAKE IT DOWN: "this depiction is not consensual"
    authorised_for_depicted: bool = False  # a guardian/agent: "I am authorised to act"
    hashes: Sequence[ReportedHash] = ()  # files hashed on the reporter's device
    # The victim section of a CyberTipline report: what the person depicted or a parent
    # gives about the victim, sent to NCMEC only with their consent.
    victim_consent: bool = False
    victim_first_name: str | None = None
    victim_last_name: str | None = None
    victim_email: str | None = None
    victim_phone: str | None = None
    victim_age: int | None = None
    victim_date_of_birth: date | None = None


@dataclass(frozen=True)
class VictimDetails:
    """What a person depicted or a parent agreed to share with NCMEC about the victim."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    age: int | None = None
    date_of_birth: date | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in vars(self).values())


@dataclass(frozen=True)
class ValidReport:
    """A report that passed validation, in canonical form."""

    category: Category
    reporter_role: ReporterRole
    explanation: str
    urls: tuple[str, ...]
    item_ids: tuple[str, ...]
    reporter_name: str | None
    reporter_email: str | None
    contact: str | None
    signature: str | None
    good_faith: bool
    not_consensual: bool
    takedown_request: bool  # a valid TAKE IT DOWN Act request: starts the 48-hour clock
    missing_for_takedown: tuple[str, ...] = field(default=())  # why not, if not
    hashes: tuple[ReportedHash, ...] = ()
    victim_consent: bool = False  # may the victim's details go to NCMEC?
    victim: VictimDetails = field(default_factory=VictimDetails)  # empty without consent

    @property
    def minor_safety(self) -> bool:
        return self.category in MINOR_SAFETY


def _clean(value: str | None, limit: int = 500) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if len(text) > limit:
        raise InvalidRequest(f"A field is longer than {limit} characters.", code="field_too_long")
    return text or None


def _enum(enum: type[Category] | type[ReporterRole], value: str, code: str) -> str:
    try:
        return enum(value.strip().lower()).value
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise InvalidRequest(
            f"Unknown value {value[:40]!r}; use one of: {allowed}.", code=code
        ) from None


def validate_report(
    raw: ReportInput, *, authenticated_role: ReporterRole | None = None
) -> ValidReport:
    """Check a report against DSA Art. 16 and, where it applies, the TAKE IT DOWN Act.

    ``authenticated_role`` is the channel the caller proved (a trusted flagger's or a
    law-enforcement agency's API key); those roles cannot be claimed on the public form.
    """
    category = Category(_enum(Category, raw.category, "unknown_category"))
    role = ReporterRole(_enum(ReporterRole, raw.reporter_role, "unknown_reporter_role"))
    if role in AUTHENTICATED_ROLES and authenticated_role != role:
        raise InvalidRequest(
            f"Reports as {role.value.replace('_', ' ')} come through that channel's API key; "
            "use the public form as a user, the person depicted or a parent or guardian.",
            code="channel_key_required",
        )
    urls = tuple(dict.fromkeys(u.strip() for u in raw.urls if u and u.strip()))
    item_ids = tuple(dict.fromkeys(i.strip() for i in raw.item_ids if i and i.strip()))
    hashes = validate_hashes(raw.hashes)
    # A file's hashes locate the content as well as an address does: they find every
    # copy the platform holds (and the TAKE IT DOWN Act asks only for information
    # "reasonably sufficient" to locate it).
    if not urls and not item_ids and not hashes:
        raise InvalidRequest(
            "Say where the content is: its exact URL, the item's id on the platform, or "
            "the hashes of the image.",
            code="location_required",
        )
    if len(urls) + len(item_ids) > MAX_LOCATIONS:
        raise InvalidRequest(
            f"At most {MAX_LOCATIONS} locations per report.", code="too_many_locations"
        )
    for url in urls:
        if not _URL.match(url):
            raise InvalidRequest(f"Not a web address: {url[:100]!r}.", code="invalid_url")
    explanation = (raw.explanation or "").strip()
    if len(explanation) > MAX_TEXT:
        raise InvalidRequest(
            f"The explanation is longer than {MAX_TEXT} characters.", code="field_too_long"
        )
    name = _clean(raw.reporter_name, 200)
    email = _clean(raw.reporter_email, 320)
    if email and not _EMAIL.match(email):
        raise InvalidRequest(f"Not an email address: {email[:100]!r}.", code="invalid_email")
    # DSA Art. 16(2): an explanation and a good-faith statement from every notifier;
    # name and email from all but reporters of child sexual abuse.
    if not explanation:
        raise InvalidRequest(
            "Explain in a few words why this content is illegal or harmful.",
            code="explanation_required",
        )
    if not raw.good_faith:
        raise InvalidRequest(
            "Confirm that you believe in good faith that the report is accurate and complete.",
            code="good_faith_required",
        )
    if category not in MINOR_SAFETY and role not in AUTHENTICATED_ROLES and not (name and email):
        raise InvalidRequest(
            "Give your name and email address (they are optional only for reports of child "
            "sexual abuse).",
            code="contact_required",
        )
    signature = _clean(raw.signature, 200)
    contact = _clean(raw.contact, 500)
    victim = validate_victim(raw, role)
    missing = _missing_for_takedown(category, role, signature, raw, email, contact)
    if category is Category.NCII and role in VICTIM_ROLES and missing:
        # An adult depicted (or their agent) asking for removal: the request must be
        # valid under the TAKE IT DOWN Act, so tell them exactly what is missing.
        raise InvalidRequest(
            "A removal request for intimate imagery needs: " + "; ".join(missing) + ".",
            code="takedown_request_incomplete",
            missing=list(missing),
        )
    return ValidReport(
        category=category,
        reporter_role=role,
        explanation=explanation,
        urls=urls,
        item_ids=item_ids,
        reporter_name=name,
        reporter_email=email,
        contact=contact,
        signature=signature,
        good_faith=True,
        not_consensual=raw.not_consensual,
        takedown_request=not missing,
        missing_for_takedown=missing,
        hashes=hashes,
        victim_consent=raw.victim_consent and role in VICTIM_ROLES,
        victim=victim,
    )


def _victim_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_victim_details", field=field)


def validate_victim(raw: ReportInput, role: ReporterRole) -> VictimDetails:
    """The victim's details, given with consent by the person depicted or a parent or
    guardian. Details without consent are refused rather than kept (nothing of theirs
    is stored that may not be sent), and so are details from anyone else."""
    details = VictimDetails(
        first_name=_clean(raw.victim_first_name, 100),
        last_name=_clean(raw.victim_last_name, 100),
        email=_clean(raw.victim_email, 320),
        phone=_clean(raw.victim_phone, 50),
        age=raw.victim_age,
        date_of_birth=raw.victim_date_of_birth,
    )
    if not (details.given or raw.victim_consent):
        return details
    if role not in VICTIM_ROLES:
        raise InvalidRequest(
            "Details of the person shown are given, with their consent, by that person or "
            "by a parent or guardian.",
            code="victim_details_not_accepted",
        )
    if details.given and not raw.victim_consent:
        raise InvalidRequest(
            "You gave details of the person shown but did not agree that they may be "
            "passed to the National Center for Missing & Exploited Children: agree, or "
            "leave those details empty.",
            code="victim_consent_required",
        )
    if details.email and not _EMAIL.match(details.email):
        raise _victim_error("victim_email", f"Not an email address: {details.email[:100]!r}.")
    if details.phone and not _PHONE.match(details.phone):
        raise _victim_error("victim_phone", "A phone number is digits, spaces, +, -, (, ), . or /.")
    if details.age is not None and not (
        isinstance(details.age, int) and 0 <= details.age <= MAX_AGE
    ):
        raise _victim_error("victim_age", f"An age is a whole number from 0 to {MAX_AGE}.")
    dob = details.date_of_birth
    if dob is not None and not (date(1900, 1, 1) <= dob <= date.today()):
        raise _victim_error("victim_date_of_birth", "A date of birth is a past date.")
    return details


def validate_hashes(raw: Sequence[ReportedHash]) -> tuple[ReportedHash, ...]:
    """Canonical hashes (lowercase hex), each file with at least an MD5 or a PDQ, the
    same file once. Raises ``invalid_hash`` or ``too_many_files``."""
    if len(raw) > MAX_HASHED_FILES:
        raise InvalidRequest(
            f"At most {MAX_HASHED_FILES} hashed files per report.", code="too_many_files"
        )
    out: dict[tuple[object, ...], ReportedHash] = {}
    for h in raw:
        md5 = MD5.normalize(h.md5) if h.md5 else None
        pdq = PDQ.normalize(h.pdq) if h.pdq else None
        signals = _other_signals(h.signals)
        if md5 is None and pdq is None and not signals:
            raise InvalidRequest(
                "Each hashed file needs its MD5 or its PDQ hash.", code="invalid_hash"
            )
        quality = h.pdq_quality
        if quality is not None and not (isinstance(quality, int) and 0 <= quality <= 100):
            raise InvalidRequest(
                "A PDQ quality is a whole number from 0 to 100.", code="invalid_hash"
            )
        dihedral = tuple(PDQ.normalize(v) for v in h.dihedral)
        if dihedral and (pdq is None or len(dihedral) != DIHEDRAL_VARIANTS or dihedral[0] != pdq):
            raise InvalidRequest(
                f"The dihedral variants are {DIHEDRAL_VARIANTS} PDQ hashes, the first being "
                "the file's own PDQ.",
                code="invalid_hash",
            )
        out.setdefault(
            (md5, pdq, signals),
            ReportedHash(md5, pdq, quality if pdq else None, dihedral, signals),
        )
    return tuple(out.values())


def _other_signals(given: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Plug-in signals of a reported file, canonical and sorted; a type that cannot be
    matched here, or that has a field of its own, is refused."""
    out: dict[str, str] = {}
    for name, value in given:
        st = signal_type(name)
        if st in (MD5, PDQ, VPDQ) or not st.matchable or not isinstance(value, str):
            raise InvalidRequest(
                f"A report's signals are hashes of types matched here other than md5 and "
                f"pdq (which have fields of their own); got {st.name}.",
                code="invalid_hash",
            )
        out[st.name] = st.normalize(value)
    return tuple(sorted(out.items()))


def _missing_for_takedown(
    category: Category,
    role: ReporterRole,
    signature: str | None,
    raw: ReportInput,
    email: str | None,
    contact: str | None,
) -> tuple[str, ...]:
    if category not in INTIMATE_IMAGERY:
        return ("a category of intimate imagery",)
    if role not in VICTIM_ROLES:
        return ("a request by the person depicted or someone authorised to act for them",)
    missing = []
    if not signature:
        missing.append("your signature (type your full name)")
    if not raw.not_consensual:
        missing.append("a statement in good faith that the depiction is not consensual")
    if role is ReporterRole.PARENT_GUARDIAN and not raw.authorised_for_depicted:
        missing.append("a statement that you are authorised to act for the person depicted")
    if not (email or contact):
        missing.append("contact information (an email address or other contact)")
    return tuple(missing)
