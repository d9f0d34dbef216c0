"""A patient's whole conversation, read from the tracker store's `events` table (Rasa's SQL tracker
store schema: one row per event, its JSON in `data`), without importing Rasa.

Each assistant answer carries the triage object of the message it answers (a `custom` message); its
symptoms' character offsets mark the matched words in the patient's text.

Some messages never reach the tracker store: one refused by a rate limit, or answered by the safety
net when the dialogue failed. Their words are in the escalation store, so they are merged in here, in
time order and marked with how they were answered, so that the care team reads every escalating
message on the escalation's page (an incident's page lists its messages with each sender).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from bot.careteam.store import escalation_messages, escalations

_events = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("sender_id", sa.String),
    sa.column("type_name", sa.String),
    sa.column("timestamp", sa.Float),
    sa.column("data", sa.Text),
)


@dataclass
class Piece:
    """A run of the patient's text; `symptom` is set on the words that matched a catalogue term."""

    text: str
    symptom: dict[str, Any] | None = None


@dataclass
class Turn:
    at: dt.datetime
    speaker: str  # patient, assistant
    text: str
    message_id: str = ""
    triage: dict[str, Any] | None = None
    pieces: list[Piece] = field(default_factory=list)
    #: For a message that is not in the tracker store: how it was answered, and who sent it.
    note: str = ""


def transcript(engine: sa.engine.Engine, sender_id: str) -> list[Turn]:
    """The conversation in order, with the recorded messages the tracker store does not hold; empty when
    neither store has any (or no table yet)."""
    turns = _conversation(engine, sender_id)
    return _merged(turns, _recorded_elsewhere(engine, sender_id, {t.message_id for t in turns if t.message_id}))


def _conversation(engine: sa.engine.Engine, sender_id: str) -> list[Turn]:
    if not sa.inspect(engine).has_table("events"):
        return []
    statement = (
        sa.select(_events.c.type_name, _events.c.timestamp, _events.c.data)
        .where(_events.c.sender_id == sender_id, _events.c.type_name.in_(("user", "bot")))
        .order_by(_events.c.id)
    )
    turns: list[Turn] = []
    last_patient: Turn | None = None
    with engine.connect() as connection:
        for type_name, timestamp, data in connection.execute(statement):
            event = _json(data)
            at = dt.datetime.fromtimestamp(float(timestamp or 0), dt.timezone.utc)
            if type_name == "user":
                parse = event.get("parse_data") or {}
                text = str(event.get("text") or "")
                last_patient = Turn(at, "patient", text, str(parse.get("message_id") or ""), pieces=[Piece(text)])
                turns.append(last_patient)
                continue
            custom = (event.get("data") or {}).get("custom")
            if isinstance(custom, dict) and isinstance(custom.get("triage"), dict):
                if last_patient is not None and last_patient.triage is None:
                    last_patient.triage = custom["triage"]
                    last_patient.pieces = highlight(last_patient.text, custom["triage"].get("symptoms", []))
                continue
            if event.get("text"):
                turns.append(Turn(at, "assistant", str(event["text"])))
    return turns


def _recorded_elsewhere(engine: sa.engine.Engine, sender_id: str, known: set[str]) -> list[Turn]:
    """Escalating messages from this sender, or in this sender's (or incident's) escalations, that the
    tracker store does not hold."""
    if not sa.inspect(engine).has_table(escalation_messages.name):
        return []
    statement = (
        sa.select(
            escalation_messages.c.message_id,
            escalation_messages.c.received_at,
            escalation_messages.c.text,
            escalation_messages.c.triage,
            escalation_messages.c.sender_id,
        )
        .where(
            sa.or_(
                escalation_messages.c.sender_id == sender_id,
                escalation_messages.c.escalation_id.in_(
                    sa.select(escalations.c.id).where(escalations.c.sender_id == sender_id)
                ),
            )
        )
        .order_by(escalation_messages.c.received_at, escalation_messages.c.id)
    )
    turns: list[Turn] = []
    with engine.connect() as connection:
        for message_id, received_at, text, triage_json, author in connection.execute(statement):
            if message_id in known:
                continue
            known.add(message_id)
            triage = _json(triage_json)
            symptoms = triage.get("symptoms")
            turns.append(
                Turn(
                    received_at,
                    "patient",
                    text,
                    message_id,
                    triage or None,
                    highlight(text, symptoms if isinstance(symptoms, list) else []),
                    note=_how_answered(triage, author if author and author != sender_id else ""),
                )
            )
    return turns


def _how_answered(triage: dict[str, Any], other_sender: str) -> str:
    limit = triage.get("rate_limited")
    if limit:
        how = f"refused by the {limit} rate limit, answered with the safe reply"
    elif triage.get("safety_net"):
        how = "answered with the safe reply (the dialogue did not answer)"
    else:
        how = "recorded with the escalation"
    return f"{how}; from sender {other_sender}" if other_sender else how


def _merged(conversation: list[Turn], recorded: list[Turn]) -> list[Turn]:
    """Each recorded message placed before the first conversation turn that is later than it; the
    conversation keeps its own order."""
    if not recorded:
        return conversation
    turns: list[Turn] = []
    pending = iter(recorded)
    waiting = next(pending, None)
    for turn in conversation:
        while waiting is not None and waiting.at < turn.at:
            turns.append(waiting)
            waiting = next(pending, None)
        turns.append(turn)
    while waiting is not None:
        turns.append(waiting)
        waiting = next(pending, None)
    return turns


def highlight(text: str, symptoms: list[dict[str, Any]]) -> list[Piece]:
    """The text cut into plain runs and matched words; overlapping or out-of-range offsets are skipped."""
    spans = sorted(
        (s for s in symptoms if _valid(s, len(text))),
        key=lambda s: (int(s["start"]), -int(s["end"])),
    )
    pieces: list[Piece] = []
    position = 0
    for symptom in spans:
        start, end = int(symptom["start"]), int(symptom["end"])
        if start < position:
            continue
        if start > position:
            pieces.append(Piece(text[position:start]))
        pieces.append(Piece(text[start:end], symptom))
        position = end
    if position < len(text) or not pieces:
        pieces.append(Piece(text[position:]))
    return pieces


def _valid(symptom: dict[str, Any], length: int) -> bool:
    try:
        start, end = int(symptom["start"]), int(symptom["end"])
    except (KeyError, TypeError, ValueError):
        return False
    return 0 <= start < end <= length


def _json(data: str | None) -> dict[str, Any]:
    try:
        value = json.loads(data or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
