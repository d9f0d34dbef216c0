"""The triage outcome: levels, symptoms and the temperature reading, as frozen values with a JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Level(str, Enum):
    """How urgently the patient should act, lowest first."""

    NONE = "none"
    UNCLEAR = "unclear"
    MENTION = "mention"
    CALL_NOW = "call_now"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def parse(cls, value: str) -> Level:
        return cls(value.strip().lower())


_RANKS = {level: rank for rank, level in enumerate(Level)}

#: The levels a catalogue row may carry; `none` and `unclear` describe messages, not symptoms.
SYMPTOM_LEVELS = (Level.MENTION, Level.CALL_NOW, Level.EMERGENCY)


def worst(levels: list[Level], default: Level = Level.NONE) -> Level:
    """Worst wins: the highest-ranked level, or `default` when there is none."""
    return max(levels, key=lambda level: level.rank, default=default)


@dataclass(frozen=True)
class Symptom:
    """One catalogue term found in the message, with the words that matched and why it has its level."""

    term: str
    level: Level
    syndromes: tuple[str, ...]
    span: str
    start: int
    end: int
    method: str
    score: float
    negated: bool
    reason: str
    context: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "term": self.term,
            "level": self.level.value,
            "syndromes": list(self.syndromes),
            "span": self.span,
            "start": self.start,
            "end": self.end,
            "method": self.method,
            "score": round(self.score, 3),
            "negated": self.negated,
            "reason": self.reason,
            "context": list(self.context),
        }


@dataclass(frozen=True)
class Temperature:
    """The highest body temperature written in the message."""

    value: float
    unit: str
    celsius: float
    span: str
    start: int
    end: int
    band: str
    term: str
    advice: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "celsius": round(self.celsius, 1),
            "span": self.span,
            "start": self.start,
            "end": self.end,
            "band": self.band,
            "term": self.term or None,
            "advice": self.advice,
        }


@dataclass(frozen=True)
class Triage:
    """The decision for one message: the worst level, each symptom that counts, and what was set aside."""

    level: Level
    reason: str
    symptoms: tuple[Symptom, ...] = ()
    excluded: tuple[Symptom, ...] = field(default=())
    temperature: Temperature | None = None
    #: Why a message is `unclear`: "unreadable" (not English) or "unmatched_complaint".
    unclear_because: str = ""
    #: The language the message was read in: "en", or "es" for Spanish.
    language: str = "en"

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "reason": self.reason,
            "symptoms": [symptom.to_dict() for symptom in self.symptoms],
            "excluded": [symptom.to_dict() for symptom in self.excluded],
            "temperature": self.temperature.to_dict() if self.temperature else None,
            "unclear_because": self.unclear_because or None,
            "language": self.language,
        }
