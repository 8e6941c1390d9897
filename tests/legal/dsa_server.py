"""A local DSA Transparency Database for tests, speaking its documented API.

Written from the Commission's API documentation (schema in force since 1 July 2025,
https://transparency.dsa.ec.europa.eu/page/api-documentation) and the validation rules
of the database's own source, NOT from Takedown's validator (domain/dsa_lists.py): the
two must be able to disagree. Like the real database it checks enumerations, the
fields required with a value ("required_if"/"required_without_all"), lengths, date
formats and ranges, the puid's form and its uniqueness per platform; it does NOT check
that a keyword belongs to the category, nor refuse unknown fields (it drops them).

- ``POST /api/v1/statement``: one statement → 201 with the stored statement and its
  ``uuid``, or 422 ``{"message", "errors": {field: [messages]}}``.
- ``POST /api/v1/statements``: ``{"statements": [1..100]}`` → 201 ``{"statements":
  [...]}``, or 422 with ``errors`` keyed ``statement_<i>`` and nothing stored; a puid
  already stored (or twice in the call) → 422 ``errors.puid`` + ``errors.existing_puids``.
- No or a wrong bearer token → 401. ``fail`` injects answers (e.g. 503, 429) first.
"""

from __future__ import annotations

import json
import re
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "dsa-test-token-0123456789"

# The attribute options as the documentation lists them (API v2, 1 July 2025).
CATEGORY = """ANIMAL_WELFARE CONSUMER_INFORMATION CYBER_VIOLENCE CYBER_VIOLENCE_AGAINST_WOMEN
DATA_PROTECTION_AND_PRIVACY_VIOLATIONS ILLEGAL_OR_HARMFUL_SPEECH
INTELLECTUAL_PROPERTY_INFRINGEMENTS NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS
NOT_SPECIFIED_NOTICE OTHER_VIOLATION_TC PROTECTION_OF_MINORS RISK_FOR_PUBLIC_SECURITY
SCAMS_AND_FRAUD SELF_HARM UNSAFE_AND_PROHIBITED_PRODUCTS VIOLENCE"""
KEYWORD = """ANIMAL_HARM ADULT_SEXUAL_MATERIAL AGE_SPECIFIC_RESTRICTIONS
AGE_SPECIFIC_RESTRICTIONS_MINORS BIOMETRIC_DATA_BREACH BULLYING_AGAINST_GIRLS
CHILD_SEXUAL_ABUSE_MATERIAL CHILD_SEXUAL_ABUSE_MATERIAL_DEEPFAKE
CONTENT_PROMOTING_EATING_DISORDERS COORDINATED_HARM COPYRIGHT_INFRINGEMENT
CYBER_BULLYING_INTIMIDATION CYBER_HARASSMENT CYBER_HARASSMENT_AGAINST_WOMEN CYBER_INCITEMENT
CYBER_STALKING CYBER_STALKING_AGAINST_WOMEN DATA_FALSIFICATION DEFAMATION DESIGN_INFRINGEMENT
DISCRIMINATION MISINFORMATION_DISINFORMATION FEMALE_GENDERED_DISINFORMATION
GEOGRAPHIC_INDICATIONS_INFRINGEMENT GEOGRAPHICAL_REQUIREMENTS GOODS_SERVICES_NOT_PERMITTED
GROOMING_SEXUAL_ENTICEMENT_MINORS HATE_SPEECH HIDDEN_ADVERTISEMENT HUMAN_EXPLOITATION
HUMAN_TRAFFICKING ILLEGAL_ORGANIZATIONS IMPERSONATION_ACCOUNT_HIJACKING INAUTHENTIC_ACCOUNTS
INAUTHENTIC_LISTINGS INAUTHENTIC_USER_REVIEWS INCITEMENT_AGAINST_WOMEN
INCITEMENT_VIOLENCE_HATRED INSUFFICIENT_INFORMATION_ON_TRADERS LANGUAGE_REQUIREMENTS
MISLEADING_INFO_CONSUMER_RIGHTS MISLEADING_INFO_GOODS_SERVICES MISSING_PROCESSING_GROUND
NON_CONSENSUAL_IMAGE_SHARING NON_CONSENSUAL_IMAGE_SHARING_AGAINST_WOMEN
NON_CONSENSUAL_MATERIAL_DEEPFAKE NON_CONSENSUAL_MATERIAL_DEEPFAKE_AGAINST_WOMEN
NONCOMPLIANCE_PRICING NUDITY PATENT_INFRINGEMENT PHISHING PROHIBITED_PRODUCTS PYRAMID_SCHEMES
RIGHT_TO_BE_FORGOTTEN OTHER RISK_ENVIRONMENTAL_DAMAGE RISK_PUBLIC_HEALTH SELF_MUTILATION
STALKING SUICIDE TERRORIST_CONTENT TRADE_SECRET_INFRINGEMENT TRADEMARK_INFRINGEMENT
TRAFFICKING_WOMEN_GIRLS UNLAWFUL_SALE_ANIMALS UNSAFE_CHALLENGES UNSAFE_PRODUCTS
VIOLATION_EU_LAW VIOLATION_NATIONAL_LAW"""
OPTIONS = {
    "category": {f"STATEMENT_CATEGORY_{c}" for c in CATEGORY.split()},
    "category_addition": {f"STATEMENT_CATEGORY_{c}" for c in CATEGORY.split()},
    "category_specification": {f"KEYWORD_{k}" for k in KEYWORD.split()},
    "decision_visibility": {
        f"DECISION_VISIBILITY_{v}"
        for v in [
            "CONTENT_REMOVED",
            "CONTENT_DISABLED",
            "CONTENT_DEMOTED",
            "CONTENT_AGE_RESTRICTED",
            "CONTENT_INTERACTION_RESTRICTED",
            "CONTENT_LABELLED",
            "OTHER",
        ]
    },
    "decision_monetary": {f"DECISION_MONETARY_{v}" for v in ("SUSPENSION", "TERMINATION", "OTHER")},
    "decision_provision": {
        f"DECISION_PROVISION_{a}_{b}"
        for a in ("PARTIAL", "TOTAL")
        for b in ("SUSPENSION", "TERMINATION")
    },
    "decision_account": {"DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED"},
    "account_type": {"ACCOUNT_TYPE_BUSINESS", "ACCOUNT_TYPE_PRIVATE"},
    "decision_ground": {"DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"},
    "content_type": {
        f"CONTENT_TYPE_{t}"
        for t in ["APP", "AUDIO", "IMAGE", "PRODUCT", "SYNTHETIC_MEDIA", "TEXT", "VIDEO", "OTHER"]
    },
    "source_type": {
        "SOURCE_ARTICLE_16",
        "SOURCE_TRUSTED_FLAGGER",
        "SOURCE_TYPE_OTHER_NOTIFICATION",
        "SOURCE_VOLUNTARY",
    },
    "automated_detection": {"Yes", "No"},
    "incompatible_content_illegal": {"Yes", "No"},
    "automated_decision": {
        "AUTOMATED_DECISION_FULLY",
        "AUTOMATED_DECISION_PARTIALLY",
        "AUTOMATED_DECISION_NOT_AUTOMATED",
    },
    "territorial_scope": set(
        [
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
            "IS",
            "IT",
            "LI",
            "LT",
            "LU",
            "LV",
            "MT",
            "NL",
            "NO",
            "PL",
            "PT",
            "RO",
            "SE",
            "SI",
            "SK",
        ]
    ),
}
ARRAYS = {
    "decision_visibility",
    "category_addition",
    "category_specification",
    "content_type",
    "territorial_scope",
}
LIMITS = {
    "decision_visibility_other": 500,
    "decision_monetary_other": 500,
    "category_specification_other": 500,
    "decision_ground_reference_url": 500,
    "illegal_content_legal_ground": 500,
    "illegal_content_explanation": 2000,
    "incompatible_content_ground": 500,
    "incompatible_content_explanation": 2000,
    "content_type_other": 500,
    "decision_facts": 5000,
    "source_identity": 500,
    "puid": 500,
}
DATES = {
    "content_date": ("2000-01-01", "2038-01-01"),
    "application_date": ("2020-01-01", "2038-01-01"),
    "end_date_account_restriction": (None, "2038-01-01"),
    "end_date_monetary_restriction": (None, "2038-01-01"),
    "end_date_service_restriction": (None, "2038-01-01"),
    "end_date_visibility_restriction": (None, "2038-01-01"),
}
DECISIONS = ["decision_visibility", "decision_monetary", "decision_provision", "decision_account"]


def _label(name: str) -> str:
    return name.replace("_", " ")


def check(st: object, removed: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """The database's validation of one statement: field -> messages. ``removed``:
    options the database no longer takes (a list change Takedown does not know of)."""
    if not isinstance(st, dict):
        return {"statement": ["The statement must be an object."]}
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    def present(name: str) -> bool:
        return st.get(name) not in (None, "", [])

    for name in (
        "decision_ground",
        "content_type",
        "category",
        "content_date",
        "application_date",
        "decision_facts",
        "source_type",
        "automated_detection",
        "automated_decision",
        "puid",
    ):
        if not present(name):
            add(name, f"The {_label(name)} field is required.")
    if not any(present(d) for d in DECISIONS):
        for d in DECISIONS:
            others = " / ".join(_label(o) for o in DECISIONS if o != d)
            add(d, f"The {_label(d)} field is required when none of {others} are present.")
    for name, options in OPTIONS.items():
        allowed = options - (removed or {}).get(name, set())
        value = st.get(name)
        if value is None:
            continue
        if name in ARRAYS:
            if not isinstance(value, list):
                add(name, f"The {_label(name)} field must be an array.")
            elif any(v not in allowed for v in value):
                add(name, f"The selected {_label(name)} is invalid.")
        elif value not in allowed:
            add(name, f"The selected {_label(name)} is invalid.")
    ground = st.get("decision_ground")
    for name, needed_ground in (
        ("illegal_content_legal_ground", "DECISION_GROUND_ILLEGAL_CONTENT"),
        ("illegal_content_explanation", "DECISION_GROUND_ILLEGAL_CONTENT"),
        ("incompatible_content_ground", "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
        ("incompatible_content_explanation", "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    ):
        if ground == needed_ground and not present(name):
            add(name, f"The {_label(name)} field is required when decision ground is ….")
    for name, other_field, other_value in (
        ("decision_visibility", "decision_visibility_other", "DECISION_VISIBILITY_OTHER"),
        ("decision_monetary", "decision_monetary_other", "DECISION_MONETARY_OTHER"),
        ("content_type", "content_type_other", "CONTENT_TYPE_OTHER"),
    ):
        value = st.get(name)
        chosen = other_value in value if isinstance(value, list) else value == other_value
        if chosen and not present(other_field):
            add(other_field, f"The {_label(other_field)} field is required.")
    for name, limit in LIMITS.items():
        value = st.get(name)
        if isinstance(value, str) and len(value) > limit:
            add(name, f"The {_label(name)} field must not be greater than {limit} characters.")
    puid = st.get("puid")
    if isinstance(puid, str) and puid and not re.fullmatch(r"[a-zA-Z0-9\-_]+", puid):
        add("puid", "The puid format is invalid.")
    language = st.get("content_language")
    if language is not None and not (
        isinstance(language, str) and re.fullmatch("[A-Z]{2}", language)
    ):
        add("content_language", "The selected content language is invalid.")
    for name, (after, before) in DATES.items():
        value = st.get(name)
        if value is None:
            continue
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
                raise ValueError
            day = date.fromisoformat(str(value))
        except ValueError:
            add(name, f"The {_label(name)} does not match the format YYYY-MM-DD.")
            continue
        if (after and day < date.fromisoformat(after)) or day > date.fromisoformat(before):
            add(name, f"The {_label(name)} is out of range.")
    return errors


@dataclass
class FakeDatabase:
    url: str = ""
    stored: list[dict] = field(default_factory=list)
    calls: list[tuple[str, int, int]] = field(default_factory=list)  # path, statements, status
    fail: list[int] = field(default_factory=list)
    removed: dict[str, set[str]] = field(default_factory=dict)

    def retire(self, name: str, value: str) -> None:
        """The Commission changes a list: ``value`` of ``name`` is refused from now on."""
        self.removed.setdefault(name, set()).add(value)

    @property
    def batch_url(self) -> str:
        return self.url + "s"


@contextmanager
def dsa_database(fail: list[int] | None = None) -> Iterator[FakeDatabase]:
    db = FakeDatabase(fail=list(fail or []))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            many = self.path == "/api/v1/statements"
            if self.path not in ("/api/v1/statement", "/api/v1/statements"):
                return self._send(404, {"message": "Not Found"}, 0)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Unauthenticated."}, 0)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            count = len(body.get("statements") or []) if many and isinstance(body, dict) else 1
            with lock:
                if db.fail:
                    return self._send(db.fail.pop(0), {"message": "Try later."}, count)
                if many:
                    return self._many(body)
                return self._one(body)

        def _one(self, st: dict) -> None:
            errors = check(st, db.removed)
            if errors:
                first = next(iter(errors.values()))[0]
                more = sum(len(v) for v in errors.values()) - 1
                message = first + (f" (and {more} more errors)" if more else "")
                return self._send(422, {"message": message, "errors": errors}, 1)
            if any(s["puid"] == st["puid"] for s in db.stored):
                message = "The identifier given is not unique within this platform."
                return self._send(
                    422,
                    {
                        "message": message,
                        "errors": {"puid": [message]},
                        "existing": {"puid": st["puid"]},
                    },
                    1,
                )
            return self._send(201, self._store(st), 1)

        def _many(self, body: object) -> None:
            statements = body.get("statements") if isinstance(body, dict) else None
            if not isinstance(statements, list) or not 1 <= len(statements) <= 100:
                message = "The statements field must have between 1 and 100 items."
                return self._send(422, {"message": message, "errors": {"statements": [message]}}, 0)
            errors = {
                f"statement_{i}": e
                for i, st in enumerate(statements)
                if (e := check(st, db.removed))
            }
            if errors:
                return self._send(422, {"errors": errors}, len(statements))
            puids = [st["puid"] for st in statements]
            known = {s["puid"] for s in db.stored}
            dupes = sorted({p for p in puids if p in known or puids.count(p) > 1})
            if dupes:
                message = "The platform identifier(s) are not all unique within this call."
                return self._send(
                    422,
                    {"message": message, "errors": {"puid": [message], "existing_puids": dupes}},
                    len(statements),
                )
            return self._send(
                201, {"statements": [self._store(st) for st in statements]}, len(statements)
            )

        def _store(self, st: dict) -> dict:
            known = {*OPTIONS, *LIMITS, *DATES, "content_language", "content_id"}
            kept = {k: v for k, v in st.items() if k in known}  # the rest is dropped
            out = {**kept, "uuid": str(uuidlib.uuid4()), "platform_name": "Test platform"}
            db.stored.append(out)
            return out

        def _send(self, status: int, payload: dict, count: int) -> None:
            db.calls.append((self.path, count, status))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db.url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/statement"
    try:
        yield db
    finally:
        server.shutdown()
        server.server_close()
