"""Escalations: what the care team must see, one record per patient episode, and the outbox that tells
a paging system about them.

An `emergency`, `call_now` or `unclear` outcome opens an escalation for its sender, or adds to the one
still open (status `new` or `acknowledged`): the level becomes the worst seen, the symptoms gain the
new terms, the last-message time moves. Resolving it closes the episode; the next escalating message
opens a new one. A new escalating message on an acknowledged escalation sets it back to `new`, since
the clinician who acknowledged it has not seen that message.

Messages refused by a rate limit for their address (a flood, often with a new sender id each time) are
grouped: they join the sender's own open escalation when there is one, and otherwise one rate-limit
*incident* per address (kind `incident`), with the count, the worst level and every message's words
and sender, instead of one escalation and one notification each. An acknowledged incident is set back
to `new` only when its level rises, so a flood that goes on cannot undo the acknowledgement (and page
the team) with every message. In the queue a patient's emergency comes before an incident's, and an
incident's emergency before any other level: an incident may hide a real patient's emergency (patients
behind one shared address), yet a flood adds one row per address, never one per message.

What a message carries never keeps it off the queue: text, ids and the triage object are made
storable first (`storable`).

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

from bot.careteam import storable
from bot.database import create_engine
from bot.triage.result import Level

#: The outcomes that reach the care team.
ESCALATING = (Level.EMERGENCY, Level.CALL_NOW, Level.UNCLEAR)
STATUSES = ("new", "acknowledged", "resolved")
OPEN_STATUSES = ("new", "acknowledged")
CHANNELS = {"rest": "web", "socketio": "web", "sms": "sms"}
KINDS = ("patient", "incident")
#: Rows per queue page when the caller does not say.
PAGE_SIZE = 50


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
    # `patient`: one sender's episode; `incident`: messages refused by an address's rate limit, grouped.
    sa.Column("kind", sa.String(16), nullable=False, server_default="patient"),
    # The enrolled patient (`bot.careteam.patients`), when the conversation is theirs; NULL for an
    # unverified web visitor or an unknown SMS number, until a clinician attaches it to a patient.
    sa.Column("patient_id", sa.Integer, nullable=True, index=True),
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
    # Who wrote it: in an incident each message may come from another sender id.
    sa.Column("sender_id", sa.String(255), nullable=True, index=True),
)

#: Columns added after the first release, with the DDL that adds them to a database created before.
_ADDED_COLUMNS = {
    ("escalations", "kind"): "VARCHAR(16) NOT NULL DEFAULT 'patient'",
    ("escalation_messages", "sender_id"): "VARCHAR(255)",
    ("escalations", "patient_id"): "INTEGER",
}

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
    kind: str = "patient"
    patient_id: int | None = None

    @property
    def terms(self) -> list[str]:
        return [item["term"] for item in self.symptoms]

    @property
    def is_incident(self) -> bool:
        return self.kind == "incident"


@dataclass(frozen=True)
class Change:
    """What recording one message did: the escalation, and the notification event queued, if any."""

    escalation: Escalation
    event: str | None  # opened, level_raised, reopened, or None (added to a waiting escalation)
    recorded: bool  # False when this message had been recorded before


@dataclass(frozen=True)
class _Item:
    """One message to record, already made storable."""

    sender_id: str
    channel: str
    message_id: str
    text: str
    triage: dict[str, Any]
    level: Level
    received_at: dt.datetime
    incident: str  # the incident's open key, or "" for a message that was not refused by an address limit
    source: str  # what the incident is named by (`address 203.0.113.9`)


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
    limit: int | None = None  # None: every row (the app pages with `limit` and `offset`)
    offset: int = 0


@dataclass(frozen=True)
class Page:
    """One page of the queue and how many rows the query matched in all, so that a page never hides
    rows without saying so ("showing 51-100 of 612")."""

    items: list[Escalation]
    total: int
    offset: int
    limit: int

    @property
    def first(self) -> int:
        return self.offset + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.items)

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.last < self.total

    @property
    def number(self) -> int:
        return self.offset // self.limit + 1 if self.limit else 1

    @property
    def pages(self) -> int:
        return max((self.total + self.limit - 1) // self.limit, 1) if self.limit else 1


class EscalationStore:
    def __init__(self, url: str | None = None, engine: sa.engine.Engine | None = None) -> None:
        self.engine = engine or create_engine(url)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)

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
        incident: str = "",
    ) -> Change | None:
        """Records one triaged message; returns None when its level does not escalate. Durable (committed)
        when it returns. Safe to repeat: the same message id is recorded once. `incident` names the source
        whose rate limit refused the message (`address 203.0.113.9`): the message then joins the sender's
        open escalation, or else that source's incident."""
        level = storable.level(triage.get("level") if isinstance(triage, Mapping) else None)
        if level not in ESCALATING:
            return None
        # Made storable here, not by the callers: whatever a channel passed on still reaches the queue.
        item = _Item(
            sender_id=storable.bounded(sender_id, 255),
            channel=storable.bounded(channel, 16),
            message_id=storable.bounded(message_id, 64),
            text=storable.text(text),
            triage=storable.data(dict(triage) if isinstance(triage, Mapping) else {"level": level.value}),
            level=level,
            received_at=storable.moment(received_at) if received_at is not None else utcnow(),
            incident=storable.bounded(f"incident {storable.text(incident)}", 255) if incident else "",
            source=storable.bounded(incident, 255),
        )
        for attempt in range(3):
            try:
                with self._transaction() as connection:
                    return self._record(connection, item, link)
            except IntegrityError:
                # Another writer opened this sender's escalation or recorded this message first.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _open_row(self, connection: sa.engine.Connection, key: str) -> Any:
        return connection.execute(sa.select(escalations).where(escalations.c.open_key == key).with_for_update()).first()

    def _record(self, connection: sa.engine.Connection, item: _Item, link: str) -> Change:
        level, received_at = item.level, item.received_at
        now = utcnow()
        # The sender's open escalation is read and rewritten under a lock, so that two of their messages
        # recorded at once both count (without it, the second write is computed from the state before the
        # first and undoes it: a lost message, a lost symptom, a level lowered). SQLite locks the whole
        # database for writing; PostgreSQL the row (a missing row is caught by the unique `open_key`).
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        key, kind, owner = item.sender_id, "patient", item.sender_id
        # An enrolled patient has one open escalation whichever of their conversations (web link, their
        # own or a caregiver's number) wrote: keyed by the patient, not the conversation.
        patient_id = patients.patient_for(connection, item.sender_id)
        if patient_id is not None:
            key = f"patient:{patient_id}"
        row = self._open_row(connection, key)
        if item.incident and row is None:
            key, kind, owner = item.incident, "incident", item.source
            row = self._open_row(connection, key)
        seen = connection.execute(
            sa.select(escalation_messages.c.escalation_id).where(escalation_messages.c.message_id == item.message_id)
        ).first()
        if seen is not None:
            return Change(self._get(connection, seen[0]), None, recorded=False)
        new_symptoms = [_symptom_summary(s, received_at) for s in item.triage.get("symptoms") or [] if _is_symptom(s)]
        event: str | None
        if row is None:
            symptoms = _merge([], new_symptoms)
            escalation_id = connection.execute(
                escalations.insert().values(
                    sender_id=owner,
                    channel=item.channel,
                    level=level.value,
                    status="new",
                    open_key=key,
                    kind=kind,
                    patient_id=patient_id if kind == "patient" else None,
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
            worse = level.rank > storable.level(current["level"]).rank
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
            # A flood goes on after it is acknowledged: only a higher level sets an incident back to new.
            reopens = current["status"] == "acknowledged" and (current["kind"] != "incident" or worse)
            if reopens:
                values.update(status="new", waiting_since=received_at)
                event = "reopened"
            else:
                event = "level_raised" if worse else None
            connection.execute(escalations.update().where(escalations.c.id == escalation_id).values(**values))
        connection.execute(
            escalation_messages.insert().values(
                escalation_id=escalation_id,
                message_id=item.message_id,
                received_at=received_at,
                level=level.value,
                text=item.text,
                triage=json.dumps(item.triage),
                sender_id=item.sender_id,
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
        """Patients' emergencies first, then incidents' emergencies, then patients' other escalations and
        last incidents' others, each the longest waiting first; resolved ones (when asked for) after the
        open ones, newest first. Every matching row unless `query.limit` says otherwise."""
        statement = self._ordered(self._matching(sa.select(escalations), query))
        if query.limit is not None:
            statement = statement.limit(max(query.limit, 0))
        if query.offset > 0:
            statement = statement.offset(query.offset)
        with self.engine.connect() as connection:
            return [_escalation(row._mapping) for row in connection.execute(statement)]

    def page(self, query: Query = Query()) -> Page:
        """The rows of `queue` from `query.offset` (at most `query.limit`, default `PAGE_SIZE`), and how many
        rows match in all."""
        limit = query.limit if query.limit is not None and query.limit > 0 else PAGE_SIZE
        offset = max(query.offset, 0)
        counted = self._matching(sa.select(sa.func.count()).select_from(escalations), query)
        statement = self._ordered(self._matching(sa.select(escalations), query)).limit(limit).offset(offset)
        with self.engine.connect() as connection:
            total = int(connection.execute(counted).scalar_one())
            items = [_escalation(row._mapping) for row in connection.execute(statement)]
        return Page(items, total, offset, limit)

    def _matching(self, statement: Any, query: Query) -> Any:
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
                    # An enrolled patient is found by name or medical record number.
                    escalations.c.patient_id.in_(
                        sa.select(patients.patients.c.id).where(
                            sa.or_(
                                sa.func.lower(patients.patients.c.name).like(pattern, escape="\\"),
                                sa.func.lower(patients.patients.c.mrn).like(pattern, escape="\\"),
                            )
                        )
                    ),
                    escalations.c.id.in_(
                        sa.select(escalation_messages.c.escalation_id).where(
                            sa.or_(
                                sa.func.lower(escalation_messages.c.text).like(pattern, escape="\\"),
                                # An incident's messages come from many senders: each is findable.
                                sa.func.lower(escalation_messages.c.sender_id).like(pattern, escape="\\"),
                            )
                        )
                    ),
                )
            )
        return statement

    @staticmethod
    def _ordered(statement: Any) -> Any:
        emergency = escalations.c.level == Level.EMERGENCY.value
        patient = escalations.c.kind != "incident"
        return statement.order_by(
            sa.case((escalations.c.status == "resolved", 1), else_=0),
            sa.case((sa.and_(emergency, patient), 0), (emergency, 1), (patient, 2), else_=3),
            sa.case((escalations.c.status == "resolved", None), else_=escalations.c.waiting_since),
            escalations.c.resolved_at.desc(),
            escalations.c.id,
        )

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

    def attach(self, escalation_id: int, patient_id: int, user: str) -> Escalation:
        """Makes an unverified or unknown sender's escalation the enrolled patient's. While open it
        becomes the patient's open escalation, unless they have one already (then both stay open, and
        the patient's next messages join theirs)."""
        with self._transaction() as connection:
            current = self._get(connection, escalation_id)
            if current.is_incident:
                raise EscalationError(f"escalation {escalation_id} is a rate-limit incident, not one patient's")
            values: dict[str, Any] = {"patient_id": patient_id, "updated_at": utcnow()}
            key = f"patient:{patient_id}"
            if current.status != "resolved" and self._open_row(connection, key) is None:
                values["open_key"] = key
            connection.execute(escalations.update().where(escalations.c.id == escalation_id).values(**values))
            connection.execute(
                escalation_events.insert().values(
                    escalation_id=escalation_id, at=utcnow(), actor=user, kind="attached", note=key
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
        # The enrolled patient's id (never their name), or None for an unverified or unknown sender.
        "patient_id": escalation.patient_id,
        "kind": escalation.kind,  # `incident`: messages refused by a rate limit, `patient` the source
        "message_count": escalation.message_count,
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


def _is_symptom(symptom: object) -> bool:
    """Whether a triage object's symptom can be summarised (a term and a level this store knows); one
    that cannot is still kept in the message's stored triage object."""
    return (
        isinstance(symptom, Mapping)
        and isinstance(symptom.get("term"), str)
        and symptom.get("level") in {level.value for level in Level}
    )


def _symptom_summary(symptom: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
    syndromes = symptom.get("syndromes") or []
    return {
        "term": symptom["term"],
        "level": symptom["level"],
        "span": symptom.get("span", ""),
        "reason": symptom.get("reason", ""),
        "syndromes": list(syndromes) if isinstance(syndromes, list) else [str(syndromes)],
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


def _add_missing_columns(engine: sa.engine.Engine) -> None:
    """Adds the columns of `_ADDED_COLUMNS` to a database created before them (`create_all` makes new
    tables only). Several processes start at once: one that finds the column added meanwhile goes on."""
    inspector = sa.inspect(engine)
    for (table, column), ddl in _ADDED_COLUMNS.items():
        if column in {c["name"] for c in inspector.get_columns(table)}:
            continue
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
                if column in ("sender_id", "patient_id"):
                    connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{table}_{column} ON {table} ({column})")
        except sa.exc.DBAPIError:
            if column not in {c["name"] for c in sa.inspect(engine).get_columns(table)}:
                raise


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Last: the patients' tables share `metadata` (made with the rest by `create_all`), and those modules
# build on the names above.
from bot.careteam import links, patients  # noqa: E402, F401
