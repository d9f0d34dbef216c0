"""Who may use the review app, their sessions, failed logins, and the audit log; in the project database.

- Passwords are hashed with argon2id (argon2-cffi's defaults); a hash made with older parameters is
  replaced at the next login.
- A session is a random 256-bit token in a cookie; the database keeps only its SHA-256, so a copy of
  the database does not let anyone in. Sessions end after `idle` minutes without a request and after
  `absolute` hours in any case, and at logout.
- Each session has its own CSRF token, which every form that changes something must send back.
- Login throttling: after `max_failures` failed logins for one username, or `max_failures_per_address`
  from one address (higher: a ward's computers may share one), within `window`, further attempts are
  refused until the window has passed (right or wrong password).
- The audit log records who did what, when, to which patient: every page view and action.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bot.careteam.store import UTCDateTime, metadata, utcnow

ROLES = ("clinician", "admin")
MIN_PASSWORD_LENGTH = 12

users = sa.Table(
    "careteam_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("password_changed_at", UTCDateTime, nullable=False),
)

sessions = sa.Table(
    "careteam_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("careteam_users.username"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

login_failures = sa.Table(
    "careteam_login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("address", sa.String(64), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
)

audit_log = sa.Table(
    "careteam_audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("patient", sa.String(255), nullable=True, index=True),
    sa.Column("escalation_id", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
)


class AccountError(Exception):
    """A refused account change (unknown role, short password, existing user ...)."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str
    disabled: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    created_at: dt.datetime


@dataclass(frozen=True)
class Policy:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=12)
    max_failures: int = 5
    max_failures_per_address: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)


class Accounts:
    def __init__(self, engine: sa.engine.Engine, policy: Policy = Policy()) -> None:
        self.engine = engine
        self.policy = policy
        self._hasher = PasswordHasher()
        metadata.create_all(engine)
        # Verifying against this when the user does not exist keeps the answer's timing the same.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- users --------------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str = "clinician", display_name: str = "") -> User:
        username = _check_username(username)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        _check_password(password, username)
        now = utcnow()
        with self.engine.begin() as connection:
            if connection.execute(sa.select(users.c.username).where(users.c.username == username)).first():
                raise AccountError(f"user {username!r} exists (use set-password to change the password)")
            connection.execute(
                users.insert().values(
                    username=username,
                    display_name=display_name.strip() or username,
                    role=role,
                    password_hash=self._hasher.hash(password),
                    disabled=False,
                    created_at=now,
                    password_changed_at=now,
                )
            )
        return User(username, display_name.strip() or username, role, False)

    def set_password(self, username: str, password: str) -> None:
        _check_password(password, username)
        with self.engine.begin() as connection:
            changed = connection.execute(
                users.update()
                .where(users.c.username == username)
                .values(password_hash=self._hasher.hash(password), password_changed_at=utcnow())
            ).rowcount
            if changed != 1:
                raise AccountError(f"no user {username!r}")
            connection.execute(sessions.delete().where(sessions.c.username == username))

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self.engine.begin() as connection:
            changed = connection.execute(
                users.update().where(users.c.username == username).values(disabled=disabled)
            ).rowcount
            if changed != 1:
                raise AccountError(f"no user {username!r}")
            if disabled:
                connection.execute(sessions.delete().where(sessions.c.username == username))

    def users(self) -> list[User]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(users).order_by(users.c.username))
            return [_user(row._mapping) for row in rows]

    # -- logging in ---------------------------------------------------------------------------------

    def throttled(self, username: str, address: str) -> bool:
        since = utcnow() - self.policy.window
        with self.engine.connect() as connection:
            by_user = connection.execute(
                sa.select(sa.func.count())
                .select_from(login_failures)
                .where(login_failures.c.username == _login_name(username), login_failures.c.at > since)
            ).scalar_one()
            by_address = connection.execute(
                sa.select(sa.func.count())
                .select_from(login_failures)
                .where(login_failures.c.address == address[:64], login_failures.c.at > since)
            ).scalar_one()
        return bool(by_user >= self.policy.max_failures or by_address >= self.policy.max_failures_per_address)

    def authenticate(self, username: str, password: str, address: str) -> User | None:
        """The user when the password is right, the account enabled and logins for it not throttled;
        otherwise None, and the refused attempt counts towards throttling. Callers check `throttled` first
        to say why; the check here keeps a caller that forgets from letting a guesser in."""
        username = _login_name(username)
        address = address[:64]
        if self.throttled(username, address):
            return None
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.username == username)).first()
        stored = row._mapping["password_hash"] if row is not None else self._dummy_hash
        try:
            self._hasher.verify(stored, password)
            ok = row is not None and not row._mapping["disabled"]
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None:
            with self.engine.begin() as connection:
                connection.execute(login_failures.insert().values(username=username, address=address, at=utcnow()))
            return None
        if self._hasher.check_needs_rehash(stored):
            with self.engine.begin() as connection:
                connection.execute(
                    users.update().where(users.c.username == username).values(password_hash=self._hasher.hash(password))
                )
        with self.engine.begin() as connection:
            connection.execute(login_failures.delete().where(login_failures.c.username == username))
        return _user(row._mapping)

    # -- sessions -----------------------------------------------------------------------------------

    def start_session(self, user: User) -> str:
        """A new session for `user`; returns the cookie value (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(
                sessions.insert().values(
                    token_hash=_digest(token),
                    username=user.username,
                    csrf_token=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                )
            )
            # Expired sessions of anyone are removed as new ones start.
            connection.execute(
                sessions.delete().where(
                    sa.or_(
                        sessions.c.last_seen_at < now - self.policy.idle,
                        sessions.c.created_at < now - self.policy.absolute,
                    )
                )
            )
        return token

    def session(self, token: str | None) -> Session | None:
        """The live session for a cookie value, its idle clock restarted; None when absent or expired."""
        if not token or len(token) > 128:
            return None
        now = utcnow()
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(sessions, users)
                .join(users, users.c.username == sessions.c.username)
                .where(sessions.c.token_hash == _digest(token))
            ).first()
            if row is None:
                return None
            values = row._mapping
            expired = (
                values["last_seen_at"] < now - self.policy.idle
                or values["created_at"] < now - self.policy.absolute
                or values["disabled"]
            )
            if expired:
                connection.execute(sessions.delete().where(sessions.c.token_hash == _digest(token)))
                return None
            connection.execute(
                sessions.update().where(sessions.c.token_hash == _digest(token)).values(last_seen_at=now)
            )
        return Session(_user(values), values["csrf_token"], values["created_at"])

    def end_session(self, token: str | None) -> None:
        if token:
            with self.engine.begin() as connection:
                connection.execute(sessions.delete().where(sessions.c.token_hash == _digest(token)))

    # -- audit --------------------------------------------------------------------------------------

    def audit(
        self,
        username: str,
        action: str,
        patient: str | None = None,
        escalation_id: int | None = None,
        detail: str = "",
        address: str = "",
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                audit_log.insert().values(
                    at=utcnow(),
                    username=username[:64],
                    action=action,
                    patient=patient,
                    escalation_id=escalation_id,
                    detail=detail[:2000] or None,
                    address=address[:64] or None,
                )
            )

    def audit_entries(self, username: str = "", patient: str = "", limit: int = 500) -> list[dict[str, Any]]:
        statement = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if username:
            statement = statement.where(audit_log.c.username == username)
        if patient:
            statement = statement.where(audit_log.c.patient == patient)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf_token.encode(), (sent or "").encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(row["username"], row["display_name"], row["role"], bool(row["disabled"]))


def _login_name(username: str) -> str:
    """A username as typed at login, as it is stored and counted (usernames have at most 64 characters)."""
    return username.strip().lower()[:64]


def _check_username(username: str) -> str:
    name = username.strip().lower()
    if not (1 <= len(name) <= 64) or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError("a username is 1-64 letters, digits or . _ - @")
    return name


def _check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip().lower() == username.strip().lower():
        raise AccountError("the password must not be the username")
