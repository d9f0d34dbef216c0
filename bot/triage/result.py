"""The triage outcome: levels, symptoms and the temperature reading, as frozen values with a JSON form.

`to_dict` writes the JSON form that the NLU puts on the message and the replies carry; `from_dict` reads it
back, checking every field, so that the action server answers from the NLU's triage instead of triaging
the words again. The JSON form rounds two figures for people to read (a symptom's score to 3 decimals, a
temperature in Celsius to 1): what is read back has those rounded figures and everything else exactly,
and writes the same JSON again. Neither figure decides a reply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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

    @classmethod
    def from_dict(cls, data: Any, where: str = "symptom") -> Symptom:
        """The symptom `to_dict` wrote; `MalformedTriage` names the first field that is not as written."""
        fields = _fields(data, _SYMPTOM_KEYS, where)
        return cls(
            term=_text(fields, "term", where),
            level=_level(fields, "level", where),
            syndromes=_texts(fields, "syndromes", where),
            span=_text(fields, "span", where),
            start=_whole(fields, "start", where),
            end=_whole(fields, "end", where),
            method=_text(fields, "method", where),
            score=_number(fields, "score", where),
            negated=_flag(fields, "negated", where),
            reason=_text(fields, "reason", where),
            context=_texts(fields, "context", where),
        )


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

    @classmethod
    def from_dict(cls, data: Any, where: str = "temperature") -> Temperature:
        """The reading `to_dict` wrote (its `term` written as null when the reading is below fever)."""
        fields = _fields(data, _TEMPERATURE_KEYS, where)
        return cls(
            value=_number(fields, "value", where),
            unit=_text(fields, "unit", where),
            celsius=_number(fields, "celsius", where),
            span=_text(fields, "span", where),
            start=_whole(fields, "start", where),
            end=_whole(fields, "end", where),
            band=_text(fields, "band", where),
            term=_text(fields, "term", where, null_as_empty=True),
            advice=_text(fields, "advice", where),
        )


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

    @classmethod
    def from_dict(cls, data: Any) -> Triage:
        """The triage `to_dict` wrote. Every field is checked, and a dict that `to_dict` could not have
        written (a key missing or unknown, a value of another type, a level that does not exist) raises
        `MalformedTriage`, naming the field and never its value, which may be the patient's words."""
        fields = _fields(data, _TRIAGE_KEYS, "triage")
        temperature = fields["temperature"]
        return cls(
            level=_level(fields, "level", "triage"),
            reason=_text(fields, "reason", "triage"),
            symptoms=_symptoms(fields, "symptoms"),
            excluded=_symptoms(fields, "excluded"),
            temperature=None if temperature is None else Temperature.from_dict(temperature, "triage.temperature"),
            unclear_because=_text(fields, "unclear_because", "triage", null_as_empty=True),
            language=_text(fields, "language", "triage"),
        )


class MalformedTriage(ValueError):
    """A triage dict that `Triage.to_dict` could not have written."""


# -- reading the JSON form back: each helper names the field it refuses and what it must be -------------

_SYMPTOM_KEYS = frozenset(
    {"term", "level", "syndromes", "span", "start", "end", "method", "score", "negated", "reason", "context"}
)
_TEMPERATURE_KEYS = frozenset({"value", "unit", "celsius", "span", "start", "end", "band", "term", "advice"})
_TRIAGE_KEYS = frozenset({"level", "reason", "symptoms", "excluded", "temperature", "unclear_because", "language"})


def _fields(data: Any, keys: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedTriage(f"{where}: expected an object, got {type(data).__name__}")
    missing, unknown = sorted(keys - set(data)), len(set(data) - keys)
    if missing or unknown:
        # An unknown key is counted, not named: a dict that is not ours may hold anything.
        raise MalformedTriage(f"{where}: {missing} missing, {unknown} unknown; expected exactly {sorted(keys)}")
    return data


def _refuse(where: str, key: str, expected: str, value: Any) -> MalformedTriage:
    return MalformedTriage(f"{where}.{key}: expected {expected}, got {type(value).__name__}")


def _text(fields: Mapping[str, Any], key: str, where: str, null_as_empty: bool = False) -> str:
    value = fields[key]
    if null_as_empty and value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(where, key, "a string or null" if null_as_empty else "a string", value)
    return value


def _texts(fields: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = fields[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _refuse(where, key, "a list of strings", value)
    return tuple(value)


def _whole(fields: Mapping[str, Any], key: str, where: str) -> int:
    value = fields[key]
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int to Python, not to JSON
        raise _refuse(where, key, "an integer", value)
    return value


def _number(fields: Mapping[str, Any], key: str, where: str) -> float:
    value = fields[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _refuse(where, key, "a finite number", value)
    return float(value)


def _flag(fields: Mapping[str, Any], key: str, where: str) -> bool:
    value = fields[key]
    if not isinstance(value, bool):
        raise _refuse(where, key, "true or false", value)
    return value


def _level(fields: Mapping[str, Any], key: str, where: str) -> Level:
    value = fields[key]
    if not isinstance(value, str) or value not in _LEVEL_VALUES:
        raise MalformedTriage(f"{where}.{key}: expected one of {sorted(_LEVEL_VALUES)}")
    return Level(value)


def _symptoms(fields: Mapping[str, Any], key: str) -> tuple[Symptom, ...]:
    value = fields[key]
    if not isinstance(value, list):
        raise _refuse("triage", key, "a list of symptoms", value)
    return tuple(Symptom.from_dict(item, f"triage.{key}[{number}]") for number, item in enumerate(value))


_LEVEL_VALUES = frozenset(level.value for level in Level)
