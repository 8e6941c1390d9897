"""Who may do what: permissions, and which roles and API-key scopes grant them.

One table, so that the role × endpoint matrix test can read it and every endpoint
names the one permission it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from takedown.domain.cases import UserRole


class Permission(StrEnum):
    SCREEN = "screen"
    BANKS_READ = "banks:read"
    BANKS_WRITE = "banks:write"
    REGISTRY_WRITE = "registry:write"  # register accounts, items, media, views
    UPLOADER_APPEAL = "appeals:uploader"  # the platform files an uploader's appeal
    REPORT_TRUSTED_FLAGGER = "report:trusted_flagger"
    REPORT_LAW_ENFORCEMENT = "report:law_enforcement"
    CASES_READ = "cases:read"
    CASES_DECIDE = "cases:decide"
    REPORTER_IDENTITY = "reporters:identity"  # see who reported (legal, admin)
    USERS_ADMIN = "users:admin"
    OUTBOX_ADMIN = "outbox:admin"  # see deliveries, redeliver dead letters
    LEGAL_READ = "legal:read"  # the legal queue, filings, transparency figures
    LEGAL_FILE = "legal:file"  # draft, submit, retract reports; record NCA references
    EVIDENCE = "evidence"  # the evidence vault: preserve, hold, read, export, destroy
    # Set a report's or a decision's time by hand (test and staging deployments only,
    # TAKEDOWN_ALLOW_CLOCK_OVERRIDE): admins.
    CLOCK_OVERRIDE = "clock:override"
    METRICS = "metrics"  # read /metrics (counts and ages, never content or identities)
    # See, approve and refuse shares of the platform's own confirmed hashes to an
    # exchange: the legal role only (not admins, never an API key).
    SHARES_DECIDE = "shares:decide"


ALL = frozenset(Permission)

ROLE_PERMISSIONS: dict[UserRole, frozenset[Permission]] = {
    UserRole.ADMIN: ALL - {Permission.SHARES_DECIDE},
    UserRole.MODERATOR: frozenset(
        {Permission.CASES_READ, Permission.CASES_DECIDE, Permission.BANKS_READ}
    ),
    UserRole.CHILD_SAFETY_SPECIALIST: frozenset(
        {
            Permission.CASES_READ,
            Permission.CASES_DECIDE,
            Permission.BANKS_READ,
            Permission.BANKS_WRITE,
        }
    ),
    UserRole.LEGAL: frozenset(
        {
            Permission.CASES_READ,
            Permission.REPORTER_IDENTITY,
            Permission.BANKS_READ,
            Permission.LEGAL_READ,
            Permission.LEGAL_FILE,
            Permission.SHARES_DECIDE,
        }
    ),
    UserRole.PLATFORM: frozenset(
        {
            Permission.SCREEN,
            Permission.REGISTRY_WRITE,
            Permission.UPLOADER_APPEAL,
            Permission.BANKS_READ,
        }
    ),
}
# The evidence vault is for legal staff (and admins, who hold every permission).
ROLE_PERMISSIONS[UserRole.LEGAL] = ROLE_PERMISSIONS[UserRole.LEGAL] | {Permission.EVIDENCE}

# API-key scopes (machine integrations). "platform" is the usual integration key. Their
# names in the same order: domain/scopes.py (what `takedown apikey create --help` lists).
SCOPE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "screen": frozenset({Permission.SCREEN}),
    "banks:read": frozenset({Permission.BANKS_READ}),
    "banks:write": frozenset({Permission.BANKS_READ, Permission.BANKS_WRITE}),
    "registry": frozenset({Permission.REGISTRY_WRITE, Permission.UPLOADER_APPEAL}),
    "platform": ROLE_PERMISSIONS[UserRole.PLATFORM],
    "report:trusted_flagger": frozenset({Permission.REPORT_TRUSTED_FLAGGER}),
    "report:law_enforcement": frozenset({Permission.REPORT_LAW_ENFORCEMENT}),
    # Machines never decide cases, nor approve what is shared out.
    "admin": ALL - {Permission.CASES_DECIDE, Permission.SHARES_DECIDE},
    # A Prometheus scraper's key: /metrics and nothing else.
    "metrics": frozenset({Permission.METRICS}),
}


# Evidence is read by named people who state a purpose, never by machines: an admin
# key does not open the vault (the CyberTipline code calls the vault in-process).
SCOPE_PERMISSIONS["admin"] = SCOPE_PERMISSIONS["admin"] - {Permission.EVIDENCE}


def permissions_for_scopes(scopes: frozenset[str]) -> frozenset[Permission]:
    out: set[Permission] = set()
    for scope in scopes:
        out |= SCOPE_PERMISSIONS[scope]
    return frozenset(out)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (a machine) or a signed-in user (a person). Written
    into every row and audit event they cause."""

    kind: str  # "apikey" | "user"
    id: str  # public id of the key or user
    name: str
    permissions: frozenset[Permission]
    role: UserRole | None = None  # users only

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions


# Who may see media (the console's previews and reveals): people whose work needs it.
# Never an API key, whatever its scopes: a machine has no eyes, and a leaked key must
# not be a way to download the material.
MEDIA_VIEWERS = frozenset(
    {UserRole.ADMIN, UserRole.MODERATOR, UserRole.CHILD_SAFETY_SPECIALIST, UserRole.LEGAL}
)


def may_view_media(principal: Principal) -> bool:
    return principal.kind == "user" and principal.role in MEDIA_VIEWERS
