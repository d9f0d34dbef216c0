"""A patient's whole conversation, read from the tracker store's `events` table (Rasa's SQL tracker
store schema: one row per event, its JSON in `data`), without importing Rasa.

Each assistant answer carries the triage object of the message it answers (a `custom` message); its
symptoms' character offsets mark the matched words in the patient's text.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

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


def transcript(engine: sa.engine.Engine, sender_id: str) -> list[Turn]:
    """The conversation in order; empty when the tracker store has none (or no table yet)."""
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
