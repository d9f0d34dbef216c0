"""Who may use the review app, their sessions, failed logins, and the audit log; in the project database.

- Passwords are hashed with argon2id (argon2-cffi's defaults); a hash made with older parameters is
  replaced at the next login.
- A session is a random 256-bit token in a cookie; the database keeps only its SHA-256, so a copy of
  the database does not let anyone in. Sessions end after `idle` minutes without an action of the
  user (the queue's auto-refresh does not count, so an unattended screen logs itself out) and after
  `absolute` hours in any case, and at logout.
- Each session has its own CSRF token, which every form that changes something must send back.
- Login throttling limits guessing, not the person. Failed logins count per (username, address) pair
  and per address: after `max_failures` for a pair, or `max_failures_per_address` from one address
  (higher: a ward's computers may share one), within `window`, that pair or address is refused (right
  or wrong password) for `first_lockout`, doubling with each further failure up to `window`. Someone
  guessing a clinician's password from elsewhere therefore never locks the clinician out. Failures
  for one name from everywhere (a guesser with many addresses) and failures in total (a flood) add a
  growing delay to every attempt instead, up to `max_delay_s`: slower logins for all, a lockout for
  none. Unknown names are counted and answered exactly like known ones.
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
_LONG_AGO = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

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
    #: Failures per (username, address) pair before that pair is refused.
    max_failures: int = 5
    #: Failures from one address (any usernames) before that address is refused.
    max_failures_per_address: int = 20
    #: How far back failures count, and the longest refusal.
    window: dt.timedelta = dt.timedelta(minutes=15)
    #: The first refusal; each further failure doubles it, up to `window`.
    first_lockout: dt.timedelta = dt.timedelta(minutes=1)
    #: Failures for one username from all addresses before every attempt for it is delayed; five times
    #: as many in total (any names, any addresses) delay every attempt.
    slow_after: int = 20
    #: The first delay (at `slow_after`); it doubles with each further `slow_after` failures.
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0


@dataclass(frozen=True)
class Gate:
    """What a login attempt must wait for: refused for `retry_after` (None: not refused), and delayed
    by `delay_s` seconds before the password is checked."""

    retry_after: dt.timedelta | None
    delay_s: float

    @property
    def refused(self) -> bool:
        return self.retry_after is not None


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

    def gate(self, username: str, address: str) -> Gate:
        """Whether a login for `username` from `address` may be tried now, and after what delay."""
        username, address = _login_name(username), address[:64]
        now = utcnow()
        recent = login_failures.c.at > now - self.policy.window
        with self.engine.connect() as connection:

            def failures(*where: Any) -> tuple[int, dt.datetime | None]:
                statement = sa.select(sa.func.count(), sa.func.max(login_failures.c.at)).where(recent, *where)
                count, last = connection.execute(statement).one()
                return int(count), last

            pair = failures(login_failures.c.username == username, login_failures.c.address == address)
            by_address = failures(login_failures.c.address == address)
            by_name, _ = failures(login_failures.c.username == username)
            overall, _ = failures()
        until = max(
            self._refused_until(*pair, limit=self.policy.max_failures),
            self._refused_until(*by_address, limit=self.policy.max_failures_per_address),
        )
        delay = max(self._delay(by_name, self.policy.slow_after), self._delay(overall, 5 * self.policy.slow_after))
        return Gate(until - now if until > now else None, delay)

    def throttled(self, username: str, address: str) -> bool:
        return self.gate(username, address).refused

    def _refused_until(self, count: int, last: dt.datetime | None, limit: int) -> dt.datetime:
        if count < limit or last is None:
            return _LONG_AGO
        # Doubling from the first refusal: a clinician who mistyped five times waits a minute, a
        # guesser who keeps going soon waits the whole window after each try.
        lockout = min(self.policy.first_lockout * (1 << min(count - limit, 32)), self.policy.window)
        return last + lockout

    def _delay(self, count: int, threshold: int) -> float:
        if count < threshold:
            return 0.0
        doublings = min(count // threshold - 1, 32)
        return float(min(self.policy.first_delay_s * (1 << doublings), self.policy.max_delay_s))

    def authenticate(self, username: str, password: str, address: str) -> User | None:
        """The user when the password is right, the account enabled and logins for it not throttled;
        otherwise None, and the refused attempt counts towards throttling. Callers check `gate` first to
        say why and to wait its delay; the check here keeps a caller that forgets from letting a guesser
        in."""
        username = _login_name(username)
        address = address[:64]
        if self.gate(username, address).refused:
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
            now = utcnow()
            with self.engine.begin() as connection:
                connection.execute(login_failures.insert().values(username=username, address=address, at=now))
                # Older failures count for nothing any more (see `gate`); the table stays small.
                connection.execute(login_failures.delete().where(login_failures.c.at < now - self.policy.window))
            return None
        if self._hasher.check_needs_rehash(stored):
            with self.engine.begin() as connection:
                connection.execute(
                    users.update().where(users.c.username == username).values(password_hash=self._hasher.hash(password))
                )
        # Only this pair's failures are forgiven: the clinician's login must not wipe the count of someone
        # guessing the same name from elsewhere.
        with self.engine.begin() as connection:
            pair = sa.and_(login_failures.c.username == username, login_failures.c.address == address)
            connection.execute(login_failures.delete().where(pair))
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

    def session(self, token: str | None, touch: bool = True) -> Session | None:
        """The live session for a cookie value; None when absent or expired. `touch` restarts its idle
        clock: the user did something. A request the page makes on its own (the queue's auto-refresh)
        passes False, or an unattended screen would stay logged in until the absolute limit."""
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
            if touch:
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

    def audit_view(
        self,
        username: str,
        action: str,
        detail: str,
        address: str,
        fold_within: dt.timedelta,
        same_as: tuple[str, ...] = (),
        patient: str | None = None,
    ) -> bool:
        """Audits a view like `audit`, unless the same user saw the same thing (`action` or one of
        `same_as`, the same detail and patient, from the same address) within `fold_within`: the queue
        refreshing itself every few seconds is one entry, not hundreds. Returns whether it was written."""
        since = utcnow() - fold_within
        with self.engine.connect() as connection:
            seen = connection.execute(
                sa.select(audit_log.c.id)
                .where(
                    audit_log.c.username == username[:64],
                    audit_log.c.action.in_((action, *same_as)),
                    audit_log.c.detail == (detail[:2000] or None) if detail else audit_log.c.detail.is_(None),
                    audit_log.c.patient == patient if patient is not None else audit_log.c.patient.is_(None),
                    audit_log.c.address == (address[:64] or None) if address else audit_log.c.address.is_(None),
                    audit_log.c.at > since,
                )
                .limit(1)
            ).first()
        if seen is not None:
            return False
        self.audit(username, action, patient=patient, detail=detail, address=address)
        return True

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
