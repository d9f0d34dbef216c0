"""Escalations: what the care team must see, one record per patient episode, and the outbox that tells
a paging system about them.

An `emergency`, `call_now` or `unclear` outcome opens an escalation for its sender, or adds to the one
still open (status `new` or `acknowledged`): the level becomes the worst seen, the symptoms gain the
new terms, the last-message time moves. Resolving it closes the episode; the next escalating message
opens a new one. A new escalating message on an acknowledged escalation sets it back to `new`, since
the clinician who acknowledged it has not seen that message.

Each message is recorded once (its Rasa message id is unique), so a repeated write after a lost
answer changes nothing. Opening, a raised level and a reopening each queue one notification in the
outbox, in the same transaction as the escalation itself: the record and its notification are
durable together or not at all. `bot.careteam.notifier` delivers them.

Times are stored as UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.database import create_engine
from bot.triage.result import Level

#: The outcomes that reach the care team.
ESCALATING = (Level.EMERGENCY, Level.CALL_NOW, Level.UNCLEAR)
STATUSES = ("new", "acknowledged", "resolved")
OPEN_STATUSES = ("new", "acknowledged")
CHANNELS = {"rest": "web", "socketio": "web", "sms": "sms"}


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone: stored naive, read back as UTC)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC time")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


metadata = sa.MetaData()

escalations = sa.Table(
    "escalations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender_id", sa.String(255), nullable=False, index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    # The sender while the escalation is open, NULL once resolved: at most one open escalation per
    # sender, enforced by the database even when two messages race.
    sa.Column("open_key", sa.String(255), nullable=True, unique=True),
    sa.Column("symptoms", sa.Text, nullable=False),  # JSON list, worst first
    # The symptoms' terms, one a line: what the queue's search looks at (not the JSON's keys and reasons).
    sa.Column("terms", sa.Text, nullable=False, server_default=""),
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("first_message_at", UTCDateTime, nullable=False),
    sa.Column("last_message_at", UTCDateTime, nullable=False),
    sa.Column("waiting_since", UTCDateTime, nullable=False),  # the message that last made it `new`
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("acknowledged_at", UTCDateTime, nullable=True),
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

escalation_messages = sa.Table(
    "escalation_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("escalation_id", sa.Integer, sa.ForeignKey("escalations.id"), nullable=False, index=True),
    sa.Column("message_id", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("triage", sa.Text, nullable=False),  # the triage object, JSON
)

#: The escalation's history: opened, raised, reopened by the patient; acknowledged, resolved, notes.
escalation_events = sa.Table(
    "escalation_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("escalation_id", sa.Integer, sa.ForeignKey("escalations.id"), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),  # a username, or "patient"
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("level", sa.String(16), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
)

outbox = sa.Table(
    "escalation_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(36), nullable=False, unique=True),  # receivers deduplicate on it
    sa.Column("escalation_id", sa.Integer, sa.ForeignKey("escalations.id"), nullable=False),
    sa.Column("event", sa.String(24), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False, index=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("delivered_at", UTCDateTime, nullable=True, index=True),
    sa.Column("last_error", sa.Text, nullable=True),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class EscalationError(Exception):
    """A request the store refuses (unknown escalation, a status change that does not apply)."""


@dataclass(frozen=True)
class Escalation:
    id: int
    sender_id: str
    channel: str
    level: str
    status: str
    symptoms: list[dict[str, Any]]
    message_count: int
    first_message_at: dt.datetime
    last_message_at: dt.datetime
    waiting_since: dt.datetime
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    updated_at: dt.datetime

    @property
    def terms(self) -> list[str]:
        return [item["term"] for item in self.symptoms]


@dataclass(frozen=True)
class Change:
    """What recording one message did: the escalation, and the notification event queued, if any."""

    escalation: Escalation
    event: str | None  # opened, level_raised, reopened, or None (added to a waiting escalation)
    recorded: bool  # False when this message had been recorded before


@dataclass(frozen=True)
class Delivery:
    id: int
    delivery_id: str
    escalation_id: int
    event: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Query:
    """The queue's filters: status group, level, channel, and a search over the patient id, the symptom
    terms and the message text (case-insensitive; `%` and `_` are literal)."""

    status: str = "open"  # open, new, acknowledged, resolved, all
    level: str = ""
    channel: str = ""
    search: str = ""
    limit: int = 500


class EscalationStore:
    def __init__(self, url: str | None = None, engine: sa.engine.Engine | None = None) -> None:
        self.engine = engine or create_engine(url)
        metadata.create_all(self.engine)

    @contextmanager
    def _transaction(self) -> Iterator[sa.engine.Connection]:
        with self.engine.begin() as connection:
            yield connection

    # -- written by the assistant -------------------------------------------------------------------

    def record(
        self,
        sender_id: str,
        channel: str,
        message_id: str,
        text: str,
        triage: Mapping[str, Any],
        received_at: dt.datetime | None = None,
        link: str = "",
    ) -> Change | None:
        """Records one triaged message; returns None when its level does not escalate. Durable (committed)
        when it returns. Safe to repeat: the same message id is recorded once."""
        level = Level(triage["level"])
        if level not in ESCALATING:
            return None
        received_at = received_at or utcnow()
        for attempt in range(3):
            try:
                with self._transaction() as connection:
                    return self._record(connection, sender_id, channel, message_id, text, triage, received_at, link)
            except IntegrityError:
                # Another writer opened this sender's escalation or recorded this message first.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record(
        self,
        connection: sa.engine.Connection,
        sender_id: str,
        channel: str,
        message_id: str,
        text: str,
        triage: Mapping[str, Any],
        received_at: dt.datetime,
        link: str,
    ) -> Change:
        level = Level(triage["level"])
        now = utcnow()
        # The sender's open escalation is read and rewritten under a lock, so that two of their messages
        # recorded at once both count (without it, the second write is computed from the state before the
        # first and undoes it: a lost message, a lost symptom, a level lowered). SQLite locks the whole
        # database for writing; PostgreSQL the row (a missing row is caught by the unique `open_key`).
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        row = connection.execute(
            sa.select(escalations).where(escalations.c.open_key == sender_id).with_for_update()
        ).first()
        seen = connection.execute(
            sa.select(escalation_messages.c.escalation_id).where(escalation_messages.c.message_id == message_id)
        ).first()
        if seen is not None:
            return Change(self._get(connection, seen[0]), None, recorded=False)
        new_symptoms = [_symptom_summary(s, received_at) for s in triage.get("symptoms", [])]
        event: str | None
        if row is None:
            symptoms = _merge([], new_symptoms)
            escalation_id = connection.execute(
                escalations.insert().values(
                    sender_id=sender_id,
                    channel=channel,
                    level=level.value,
                    status="new",
                    open_key=sender_id,
                    symptoms=json.dumps(symptoms),
                    terms=_terms(symptoms),
                    message_count=1,
                    first_message_at=received_at,
                    last_message_at=received_at,
                    # The patient has waited since they wrote, also when the record was spooled first.
                    waiting_since=received_at,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            event = "opened"
        else:
            current = row._mapping
            escalation_id = current["id"]
            worse = level.rank > Level(current["level"]).rank
            symptoms = _merge(json.loads(current["symptoms"]), new_symptoms)
            values: dict[str, Any] = {
                "symptoms": json.dumps(symptoms),
                "terms": _terms(symptoms),
                "message_count": current["message_count"] + 1,
                # A spooled message may reach the database after a later one.
                "first_message_at": min(received_at, current["first_message_at"]),
                "last_message_at": max(received_at, current["last_message_at"]),
                "updated_at": now,
            }
            if worse:
                values["level"] = level.value
            if current["status"] == "acknowledged":
                values.update(status="new", waiting_since=received_at)
                event = "reopened"
            else:
                event = "level_raised" if worse else None
            connection.execute(escalations.update().where(escalations.c.id == escalation_id).values(**values))
        connection.execute(
            escalation_messages.insert().values(
                escalation_id=escalation_id,
                message_id=message_id,
                received_at=received_at,
                level=level.value,
                text=text,
                triage=json.dumps(dict(triage)),
            )
        )
        connection.execute(
            escalation_events.insert().values(
                escalation_id=escalation_id, at=now, actor="patient", kind=event or "message", level=level.value
            )
        )
        escalation = self._get(connection, escalation_id)
        if event is not None:
            payload = notification(escalation, event, link)
            connection.execute(
                outbox.insert().values(
                    delivery_id=payload["delivery_id"],
                    escalation_id=escalation_id,
                    event=event,
                    payload=json.dumps(payload),
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
        return Change(escalation, event, recorded=True)

    # -- read and changed by the care team ----------------------------------------------------------

    def get(self, escalation_id: int) -> Escalation:
        with self.engine.connect() as connection:
            return self._get(connection, escalation_id)

    def _get(self, connection: sa.engine.Connection, escalation_id: int) -> Escalation:
        row = connection.execute(sa.select(escalations).where(escalations.c.id == escalation_id)).first()
        if row is None:
            raise EscalationError(f"no escalation {escalation_id}")
        return _escalation(row._mapping)

    def queue(self, query: Query = Query()) -> list[Escalation]:
        """Emergencies first, then the longest waiting; resolved ones (when asked for) last, newest first."""
        statement = sa.select(escalations)
        if query.status == "open":
            statement = statement.where(escalations.c.status.in_(OPEN_STATUSES))
        elif query.status in STATUSES:
            statement = statement.where(escalations.c.status == query.status)
        if query.level:
            statement = statement.where(escalations.c.level == query.level)
        if query.channel:
            statement = statement.where(escalations.c.channel == query.channel)
        if query.search.strip():
            pattern = "%" + _escape_like(query.search.strip().lower()) + "%"
            statement = statement.where(
                sa.or_(
                    sa.func.lower(escalations.c.sender_id).like(pattern, escape="\\"),
                    sa.func.lower(escalations.c.terms).like(pattern, escape="\\"),
                    escalations.c.id.in_(
                        sa.select(escalation_messages.c.escalation_id).where(
                            sa.func.lower(escalation_messages.c.text).like(pattern, escape="\\")
                        )
                    ),
                )
            )
        statement = statement.order_by(
            sa.case((escalations.c.status == "resolved", 1), else_=0),
            sa.case((escalations.c.level == Level.EMERGENCY.value, 0), else_=1),
            sa.case((escalations.c.status == "resolved", None), else_=escalations.c.waiting_since),
            escalations.c.resolved_at.desc(),
            escalations.c.id,
        ).limit(query.limit)
        with self.engine.connect() as connection:
            return [_escalation(row._mapping) for row in connection.execute(statement)]

    def messages(self, escalation_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(escalation_messages)
                .where(escalation_messages.c.escalation_id == escalation_id)
                .order_by(escalation_messages.c.received_at, escalation_messages.c.id)
            )
            return [
                {**row._mapping, "triage": json.loads(row._mapping["triage"])}
                for row in rows  # type: ignore[dict-item]
            ]

    def history(self, escalation_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(escalation_events)
                .where(escalation_events.c.escalation_id == escalation_id)
                .order_by(escalation_events.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def acknowledge(self, escalation_id: int, user: str, note: str = "") -> Escalation:
        return self._change(escalation_id, user, "acknowledged", note)

    def resolve(self, escalation_id: int, user: str, note: str = "") -> Escalation:
        return self._change(escalation_id, user, "resolved", note)

    def add_note(self, escalation_id: int, user: str, note: str) -> Escalation:
        if not note.strip():
            raise EscalationError("the note is empty")
        with self._transaction() as connection:
            self._get(connection, escalation_id)
            connection.execute(
                escalation_events.insert().values(
                    escalation_id=escalation_id, at=utcnow(), actor=user, kind="note", note=note.strip()
                )
            )
            return self._get(connection, escalation_id)

    def _change(self, escalation_id: int, user: str, status: str, note: str) -> Escalation:
        now = utcnow()
        with self._transaction() as connection:
            current = self._get(connection, escalation_id)
            if current.status == "resolved":
                raise EscalationError(f"escalation {escalation_id} is already resolved")
            if status == "acknowledged" and current.status != "new":
                raise EscalationError(f"escalation {escalation_id} is already acknowledged")
            if status == "resolved" and not note.strip():
                raise EscalationError("say how it was resolved: a note is required")
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if status == "acknowledged":
                values.update(acknowledged_by=user, acknowledged_at=now)
            else:
                values.update(resolved_by=user, resolved_at=now, open_key=None)
                if current.acknowledged_at is None:
                    values.update(acknowledged_by=user, acknowledged_at=now)
            # The status in the WHERE clause makes two clinicians acting at once change it only once.
            changed = connection.execute(
                escalations.update()
                .where(escalations.c.id == escalation_id, escalations.c.status == current.status)
                .values(**values)
            ).rowcount
            if changed != 1:
                raise EscalationError(f"escalation {escalation_id} changed meanwhile; reload it")
            connection.execute(
                escalation_events.insert().values(
                    escalation_id=escalation_id, at=now, actor=user, kind=status, note=note.strip() or None
                )
            )
            return self._get(connection, escalation_id)

    # -- the outbox ---------------------------------------------------------------------------------

    def claim(self, limit: int = 20, lease_s: float = 60.0, now: dt.datetime | None = None) -> list[Delivery]:
        """Takes up to `limit` due notifications for `lease_s` seconds; another worker skips them until
        the lease runs out (so a worker that dies mid-delivery delays, but does not lose, them)."""
        now = now or utcnow()
        lease_until = now + dt.timedelta(seconds=lease_s)
        claimed = []
        with self._transaction() as connection:
            due = connection.execute(
                sa.select(outbox)
                .where(
                    outbox.c.delivered_at.is_(None),
                    outbox.c.next_attempt_at <= now,
                    sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now),
                )
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
            for row in due:
                item = row._mapping
                taken = connection.execute(
                    outbox.update()
                    .where(outbox.c.id == item["id"], outbox.c.delivered_at.is_(None))
                    .where(sa.or_(outbox.c.lease_until.is_(None), outbox.c.lease_until <= now))
                    .values(lease_until=lease_until)
                ).rowcount
                if taken == 1:
                    claimed.append(
                        Delivery(
                            item["id"],
                            item["delivery_id"],
                            item["escalation_id"],
                            item["event"],
                            json.loads(item["payload"]),
                            item["attempts"],
                        )
                    )
        return claimed

    def delivered(self, delivery: Delivery) -> None:
        with self._transaction() as connection:
            connection.execute(
                outbox.update()
                .where(outbox.c.id == delivery.id)
                .values(delivered_at=utcnow(), attempts=delivery.attempts + 1, lease_until=None, last_error=None)
            )

    def failed(self, delivery: Delivery, error: str, retry_in_s: float) -> None:
        with self._transaction() as connection:
            connection.execute(
                outbox.update()
                .where(outbox.c.id == delivery.id)
                .values(
                    attempts=delivery.attempts + 1,
                    next_attempt_at=utcnow() + dt.timedelta(seconds=retry_in_s),
                    lease_until=None,
                    last_error=error[:500],
                )
            )

    def outbox_status(self) -> dict[str, Any]:
        """Pending and delivered counts, the oldest pending notification and its last error."""
        with self.engine.connect() as connection:
            pending = connection.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))
            ).scalar_one()
            delivered = connection.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.delivered_at.is_not(None))
            ).scalar_one()
            oldest = connection.execute(
                sa.select(outbox.c.created_at, outbox.c.attempts, outbox.c.last_error)
                .where(outbox.c.delivered_at.is_(None))
                .order_by(outbox.c.id)
                .limit(1)
            ).first()
        return {
            "pending": pending,
            "delivered": delivered,
            "oldest_pending_at": oldest[0] if oldest else None,
            "oldest_attempts": oldest[1] if oldest else 0,
            "last_error": oldest[2] if oldest else None,
        }


def notification(escalation: Escalation, event: str, link: str = "") -> dict[str, Any]:
    """The JSON a receiver gets. No message text: the patient's words stay in the review app, behind
    its login; the page names the terms, the level and where to look."""
    return {
        "delivery_id": str(uuid.uuid4()),
        "event": event,
        "escalation_id": escalation.id,
        "patient": escalation.sender_id,
        "channel": escalation.channel,
        "level": escalation.level,
        "status": escalation.status,
        "symptoms": [{"term": s["term"], "level": s["level"]} for s in escalation.symptoms],
        "first_message_at": escalation.first_message_at.isoformat(),
        "last_message_at": escalation.last_message_at.isoformat(),
        "url": f"{link.rstrip('/')}/escalations/{escalation.id}" if link else "",
    }


def channel_name(input_channel: str | None) -> str:
    """`web` or `sms` from Rasa's input channel name; other channels keep their own name."""
    name = (input_channel or "").strip().lower()
    return CHANNELS.get(name, name or "unknown")


def _symptom_summary(symptom: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {
        "term": symptom["term"],
        "level": symptom["level"],
        "span": symptom.get("span", ""),
        "reason": symptom.get("reason", ""),
        "syndromes": list(symptom.get("syndromes", [])),
        "first_reported_at": at.isoformat(),
    }


def _merge(existing: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per term, keeping the first report and the worst level; worst first."""
    by_term: dict[str, dict[str, Any]] = {}
    for item in [*existing, *new]:
        kept = by_term.get(item["term"])
        if kept is None:
            by_term[item["term"]] = dict(item)
        elif Level(item["level"]).rank > Level(kept["level"]).rank:
            by_term[item["term"]] = {**item, "first_reported_at": kept["first_reported_at"]}
    return sorted(by_term.values(), key=lambda item: -Level(item["level"]).rank)


def _terms(symptoms: Iterable[Mapping[str, Any]]) -> str:
    return "\n".join(item["term"] for item in symptoms)


def _escalation(row: Mapping[str, Any]) -> Escalation:
    values = {name: row[name] for name in Escalation.__dataclass_fields__ if name != "symptoms"}
    return Escalation(symptoms=json.loads(row["symptoms"]), **values)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
