"""What the SMS channel keeps: every inbound text, stored before any reply is attempted (so a failed
reply never loses it), the reply sent for it (so Twilio's retries and replayed requests get the same
answer without being processed twice), and who has opted out (STOP).

Same database as the conversations (TRIAGE_DB_DIALECT / TRIAGE_DB; SQLite by default).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.database import create_engine

_metadata = sa.MetaData()

sms_messages = sa.Table(
    "sms_messages",
    _metadata,
    sa.Column("message_sid", sa.String(64), primary_key=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # received, answered, opted_out
    sa.Column("reply", sa.Text, nullable=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
)

sms_opt_outs = sa.Table(
    "sms_opt_outs",
    _metadata,
    sa.Column("phone", sa.String(32), primary_key=True),
    sa.Column("opted_out", sa.Boolean, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Inbound:
    message_sid: str
    phone: str
    body: str
    status: str
    reply: str | None


class SmsStore:
    def __init__(self, url: str | None = None) -> None:
        self._engine = create_engine(url)
        _metadata.create_all(self._engine)

    def receive(self, message_sid: str, phone: str, body: str) -> tuple[Inbound, bool]:
        """Stores an inbound text; returns it and whether it is new (False: a retry or a replay)."""
        now = dt.datetime.now(dt.timezone.utc)
        with self._engine.begin() as connection:
            existing = connection.execute(
                sa.select(sms_messages).where(sms_messages.c.message_sid == message_sid)
            ).first()
            if existing is not None:
                return _inbound(existing._mapping), False
            connection.execute(
                sms_messages.insert().values(
                    message_sid=message_sid, phone=phone, body=body, received_at=now, status="received"
                )
            )
        return Inbound(message_sid, phone, body, "received", None), True

    def answered(self, message_sid: str, reply: str, status: str = "answered") -> None:
        with self._engine.begin() as connection:
            connection.execute(
                sms_messages.update()
                .where(sms_messages.c.message_sid == message_sid)
                .values(status=status, reply=reply, answered_at=dt.datetime.now(dt.timezone.utc))
            )

    def opted_out(self, phone: str) -> bool:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(sms_opt_outs.c.opted_out).where(sms_opt_outs.c.phone == phone)).first()
        return bool(row and row[0])

    def set_opt_out(self, phone: str, opted_out: bool) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        with self._engine.begin() as connection:
            updated = connection.execute(
                sms_opt_outs.update().where(sms_opt_outs.c.phone == phone).values(opted_out=opted_out, changed_at=now)
            )
            if updated.rowcount == 0:
                connection.execute(sms_opt_outs.insert().values(phone=phone, opted_out=opted_out, changed_at=now))


def _inbound(row: Any) -> Inbound:
    return Inbound(row["message_sid"], row["phone"], row["body"], row["status"], row["reply"])
