"""The patient's language for texts that are not domain responses: the catalogue's explanations and
term names, what each level asks, temperature advice and a few phrases, from `knowledge/translations.csv`
(English beside Spanish, the English being the source). A text the file does not translate stays English.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from typing import Any

from bot.triage.knowledge import knowledge_dir
from bot.triage.result import Level

SPANISH = "es"


@lru_cache(maxsize=1)
def _spanish() -> dict[str, tuple[str, str]]:
    with (knowledge_dir() / "translations.csv").open(encoding="utf-8", newline="") as handle:
        return {row["key"]: (row["english"], row["spanish"]) for row in csv.DictReader(handle)}


def say(key: str, english: str, language: str, **values: str) -> str:
    """`english` in `language`: the translation of `key` when it translates this very English text."""
    text = english
    if language == SPANISH:
        source, spanish = _spanish().get(key, ("", ""))
        if spanish and (source == english or "{" in source):
            text = spanish
    return text.format(**values) if values else text


def term(name: str, language: str) -> str:
    return say(f"term:{name}", name, language)


def explanation(name: str, english: str, language: str) -> str:
    return say(f"explanation:{name}", english, language)


def action(level: Level, english: str, language: str) -> str:
    return say(f"level_action:{level.value}", english, language)


def advice(band: str, english: str, language: str) -> str:
    return say(f"temperature_advice:{band}", english, language)


def phrase(key: str, english: str, language: str, **values: str) -> str:
    return say(f"phrase:{key}", english, language, **values)


def page_strings() -> dict[str, dict[str, str]]:
    """The chat page's texts (keys "web:…") in English and Spanish, for the page to show either."""
    strings: dict[str, dict[str, str]] = {"en": {}, "es": {}}
    for key, (english, spanish) in _spanish().items():
        if key.startswith("web:"):
            strings["en"][key[4:]] = english
            strings["es"][key[4:]] = spanish or english
    return strings


def care_team_suffix(english_suffix: str, language: str) -> str:
    """ " at +1 555 0100" in the patient's language."""
    if language == SPANISH and english_suffix.startswith(" at "):
        return " al " + english_suffix[len(" at ") :]
    return english_suffix


class Speaker:
    """Sends a domain response in the patient's language. Rasa picks a response's variation from the
    tracker's slots before the events of the action that sent it are applied, so the `language` slot an
    action sets cannot choose its own replies: the Spanish variation is rendered here from the domain."""

    def __init__(self, dispatcher: Any, domain: dict[str, Any], language: str) -> None:
        self._dispatcher = dispatcher
        self._responses = domain.get("responses") or {} if isinstance(domain, dict) else {}
        self.language = language

    def say(self, response: str, **values: Any) -> None:
        text = self._variation(response) if self.language == SPANISH else None
        if text is None:
            self._dispatcher.utter_message(response=response, **values)
        else:
            self._dispatcher.utter_message(text=_fill(text, values))

    def _variation(self, response: str) -> str | None:
        for variation in self._responses.get(response) or ():
            for condition in variation.get("condition") or ():
                if condition.get("name") == "language" and condition.get("value") == SPANISH:
                    return str(variation.get("text") or "") or None
        return None


def _fill(template: str, values: dict[str, Any]) -> str:
    """Rasa's own way of filling a response: every {name} it has a value for, the rest left as written."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)
