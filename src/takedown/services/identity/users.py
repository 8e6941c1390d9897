"""People who sign in: moderators, specialists, legal staff, admins.

Passwords are hashed with argon2id (the password-hashing competition's winner, as
OWASP recommends). Sign-in returns a bearer token that expires; only its SHA-256 is
stored, like API keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from takedown.domain.access import ROLE_PERMISSIONS, Principal
from takedown.domain.cases import UserRole
from takedown.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from takedown.ids import utcnow
from takedown.services.audit.chain import record
from takedown.store.db import unit_of_work
from takedown.store.models import User, UserToken

TOKEN_PREFIX = "tdu_"
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of "no such
# user" and "wrong password" alike. Written out, not hashed at import: hashing costs
# 0.2-0.4 s in every process that imports this module (each server worker, each
# command). Made with the hasher's parameters (tests/cases/test_access.py checks that
# they still are, so the verification costs what a real one does).
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$4wAbpmhW+QM6mtz92bmdEA$"
    "jjVNxNA/RNlRiAyUOsu/vTZ+qp4qyMQ2xCcW1Bx04JE"
)


@dataclass(frozen=True)
class UserView:
    id: str
    username: str
    role: str
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenGrant:
    token: str
    expires_at: datetime
    user: UserView


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _view(u: User) -> UserView:
    return UserView(u.public_id, u.username, u.role, u.active, u.created_at)


def parse_role(value: str) -> UserRole:
    try:
        return UserRole(value.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in UserRole)
        raise InvalidRequest(
            f"Unknown role {value[:40]!r}; use: {allowed}.", code="invalid_role"
        ) from None


class UserService:
    def __init__(self, sessions: sessionmaker[Session], token_ttl: timedelta) -> None:
        self._sessions = sessions
        self._ttl = token_ttl

    def create(self, username: str, password: str, role: str, *, actor: str) -> UserView:
        username = username.strip().lower()
        if (
            not 2 <= len(username) <= 100
            or not username.replace("-", "").replace("_", "").replace(".", "").isalnum()
        ):
            raise InvalidRequest(
                "A username is 2 to 100 letters, digits, '-', '_' or '.'.", code="invalid_username"
            )
        if len(password) < MIN_PASSWORD:
            raise InvalidRequest(
                f"A password has at least {MIN_PASSWORD} characters.", code="weak_password"
            )
        parsed = parse_role(role)
        with unit_of_work(self._sessions) as s:
            if s.scalars(select(User.id).where(User.username == username)).first():
                raise Conflict(f"A user named {username!r} exists.", code="user_exists")
            user = User(username=username, password_hash=_hasher.hash(password), role=parsed.value)
            s.add(user)
            s.flush()
            record(s, actor, "user.created", "user", user.public_id, {"role": parsed.value})
            return _view(user)

    def list(self) -> list[UserView]:
        with unit_of_work(self._sessions, write=False) as s:
            return [_view(u) for u in s.scalars(select(User).order_by(User.username))]

    def set_active(self, user_id: str, active: bool, *, actor: str) -> UserView:
        with unit_of_work(self._sessions) as s:
            user = s.scalars(select(User).where(User.public_id == user_id)).first()
            if user is None:
                raise NotFound(f"No user with id {user_id[:40]!r}.", code="user_not_found")
            user.active = active
            record(
                s,
                actor,
                "user.activated" if active else "user.deactivated",
                "user",
                user.public_id,
                {},
            )
            return _view(user)

    def sign_in(self, username: str, password: str) -> TokenGrant:
        """Check the password and issue a token that expires."""
        with unit_of_work(self._sessions) as s:
            user = s.scalars(select(User).where(User.username == username.strip().lower())).first()
            try:
                _hasher.verify(user.password_hash if user else DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                user = None
            if user is None or not user.active:
                raise Unauthenticated("Wrong username or password.", code="invalid_credentials")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            expires = utcnow() + self._ttl
            s.add(UserToken(user_id=user.id, token_hash=_digest(token), expires_at=expires))
            return TokenGrant(token, expires, _view(user))

    def authenticate(self, token: str) -> Principal:
        with unit_of_work(self._sessions, write=False) as s:
            row = s.execute(
                select(UserToken, User)
                .join(User, User.id == UserToken.user_id)
                .where(UserToken.token_hash == _digest(token))
            ).first()
            if row is None:
                raise Unauthenticated("Unknown token; sign in again.", code="invalid_token")
            tok, user = row
            if tok.revoked_at is not None or not user.active:
                raise Unauthenticated(
                    "This token was revoked; sign in again.", code="invalid_token"
                )
            if tok.expires_at <= utcnow():
                raise Unauthenticated(
                    "This token has expired; sign in again.", code="token_expired"
                )
            role = UserRole(user.role)
            return Principal("user", user.public_id, user.username, ROLE_PERMISSIONS[role], role)

    def sign_out(self, token: str) -> None:
        with unit_of_work(self._sessions) as s:
            tok = s.scalars(select(UserToken).where(UserToken.token_hash == _digest(token))).first()
            if tok is not None and tok.revoked_at is None:
                tok.revoked_at = utcnow()

    def change_password(self, user_id: str, current: str, new: str, *, keep_token: str) -> None:
        """Change one's own password: the current one is checked, and every other
        sign-in of the user is ended (the one in use, ``keep_token``, stays)."""
        if len(new) < MIN_PASSWORD:
            raise InvalidRequest(
                f"A password has at least {MIN_PASSWORD} characters.", code="weak_password"
            )
        with unit_of_work(self._sessions) as s:
            user = s.scalars(select(User).where(User.public_id == user_id)).first()
            if user is None:
                raise NotFound(f"No user with id {user_id[:40]!r}.", code="user_not_found")
            try:
                _hasher.verify(user.password_hash, current)
            except (VerificationError, InvalidHashError):
                raise Unauthenticated(
                    "The current password is wrong.", code="invalid_credentials"
                ) from None
            user.password_hash = _hasher.hash(new)
            now = utcnow()
            for tok in s.scalars(
                select(UserToken).where(
                    UserToken.user_id == user.id,
                    UserToken.revoked_at.is_(None),
                    UserToken.token_hash != _digest(keep_token),
                )
            ):
                tok.revoked_at = now
            record(s, f"user:{user.username}", "user.password_changed", "user", user_id, {})
