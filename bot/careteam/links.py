"""Personal links: how an enrolled patient's web chat is known to be theirs.

A link is the chat page's address with a token, `<TRIAGE_WEB_PUBLIC_URL>#p=<token>`: 256 random bits,
unguessable, in the URL's fragment, which browsers never send to a server, so no web server's or
proxy's access log can record it (the page reads it and presents it once, in a POST body). The
database keeps only the token's SHA-256 (a copy of the database opens no chat), with who issued it,
when it expires (`TRIAGE_LINK_DAYS`, default 180: about four cycles) and whether it was revoked.
Issuing a new link revokes the patient's earlier ones, so a link that was lost stops working as soon
as the patient has a new one. The token is shown once, to the clinician who issued it, to print or
text; it is never logged.

The chat page presents the token once, when it opens (`bot/channels/rest.py`, `/webhooks/rest/session`);
`open_conversation` checks it and binds the new conversation to the patient. A wrong, revoked or
expired token gets an ordinary conversation: the visitor is still triaged (never refuse someone who
may be ill), and their escalations are marked unverified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa

from bot.careteam import patients as roster
from bot.careteam.store import UTCDateTime, metadata, utcnow
from bot.database import create_engine

DEFAULT_DAYS = 180
DEFAULT_PAGE = "http://localhost:5005/webhooks/web/"
#: Characters of a token (base64url of 32 bytes); anything else is refused before hashing.
TOKEN_CHARS = 43

patient_links = sa.Table(
    "patient_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("patient_id", sa.Integer, sa.ForeignKey("patients.id"), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_at", UTCDateTime, nullable=False),
    sa.Column("issued_by", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", sa.String(64), nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
)


@dataclass(frozen=True)
class Issued:
    """A new link: the URL (with the token, shown once) and when it expires."""

    url: str
    token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class LinkState:
    issued_at: dt.datetime
    issued_by: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    def usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def page_url() -> str:
    return os.environ.get("TRIAGE_WEB_PUBLIC_URL", "").strip() or DEFAULT_PAGE


def valid_days() -> int:
    return max(int(os.environ.get("TRIAGE_LINK_DAYS", "") or DEFAULT_DAYS), 1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class Links:
    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    def issue(self, actor: str, patient_id: int, days: int | None = None, address: str = "") -> Issued:
        """A new link for the patient; their earlier links stop working."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + dt.timedelta(days=days or valid_days())
        with self.engine.begin() as connection:
            patient = roster.load(connection, patient_id)
            if patient.status != "active":
                raise roster.PatientError(f"patient {patient_id} is discharged: no new link")
            revoked = self._revoke(connection, actor, patient_id, now)
            connection.execute(
                patient_links.insert().values(
                    patient_id=patient_id, token_hash=digest(token), issued_at=now, issued_by=actor, expires_at=expires
                )
            )
            detail = f"expires {expires.date().isoformat()}; {revoked} earlier link(s) revoked"
            roster._audit(connection, actor, "link_issued", patient_id, detail, address)
        return Issued(url=f"{page_url().split('#', 1)[0]}#p={token}", token=token, expires_at=expires)

    def revoke(self, actor: str, patient_id: int, address: str = "") -> int:
        """Revokes every link of the patient; returns how many were usable."""
        with self.engine.begin() as connection:
            roster.load(connection, patient_id)
            count = self._revoke(connection, actor, patient_id, utcnow())
            roster._audit(connection, actor, "link_revoked", patient_id, f"{count} link(s)", address)
            return count

    @staticmethod
    def _revoke(connection: sa.engine.Connection, actor: str, patient_id: int, now: dt.datetime) -> int:
        return int(
            connection.execute(
                patient_links.update()
                .where(patient_links.c.patient_id == patient_id, patient_links.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=actor)
            ).rowcount
        )

    def latest(self, patient_id: int) -> LinkState | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(patient_links)
                .where(patient_links.c.patient_id == patient_id)
                .order_by(patient_links.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        values = row._mapping
        return LinkState(**{name: values[name] for name in LinkState.__dataclass_fields__})

    def open_conversation(self, token: object, sender_id: str) -> int | None:
        """Binds `sender_id` (a conversation the server just issued) to the patient whose usable link
        `token` is, and returns the patient's id; None for anything else (wrong type or length, unknown,
        revoked, expired, discharged patient), binding nothing."""
        if not isinstance(token, str) or len(token) != TOKEN_CHARS or not token.isascii():
            return None
        now = utcnow()
        with self.engine.begin() as connection:
            row = connection.execute(
                sa.select(patient_links.c.id, patient_links.c.patient_id)
                .join(roster.patients, roster.patients.c.id == patient_links.c.patient_id)
                .where(
                    patient_links.c.token_hash == digest(token),
                    patient_links.c.revoked_at.is_(None),
                    patient_links.c.expires_at > now,
                    roster.patients.c.status == "active",
                )
            ).first()
            if row is None:
                return None
            link_id, patient_id = int(row[0]), int(row[1])
            connection.execute(patient_links.update().where(patient_links.c.id == link_id).values(last_used_at=now))
            roster.bind(connection, sender_id, patient_id, "link")
            return patient_id


@lru_cache(maxsize=1)
def default_links() -> Links:
    """The process's links, on the project database (made on first use)."""
    return Links(create_engine())
