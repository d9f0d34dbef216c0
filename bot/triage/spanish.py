"""Spanish: which messages are in Spanish, and the Spanish words of the same catalogue.

The catalogue stays the monograph's, in English: its terms, levels and reasons. `knowledge/es/` adds
Spanish ways to say each term (`side_effects.csv`: term, synonyms, severe_synonyms), Spanish word groups,
context cues, complaint words and SMS spellings; a Spanish message is read with the Spanish words and the
English ones together, so "tiene fever" and "le duele el stomach" are read too.

Language identification is lingua's (`lingua-language-detector`), over a few languages that patients
here may write in; a message is Spanish when Spanish is the likeliest of them. It is asked only when a
message holds a sign of Spanish (an accent or a Spanish word that is not also English), so English
messages pay nothing for it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.triage.catalogue import Catalogue, Entry, phrases_of
from bot.triage.knowledge import KnowledgeError, read_table

SPANISH = "es"
ENGLISH = "en"
#: How much likelier Spanish must be than English: "tiene fever" is, a stray "y" in English is not.
MARGIN = 0.05
NEAR_TOP = 0.15
_PLAIN_WORD = re.compile(r"(?<![{\w])[a-z]+(?![\w}])")
#: Signs that a message may be Spanish: letters English does not use, or its common short words.
_SPANISH_LETTERS = re.compile(r"[áéíóúñ¿¡ü]", re.IGNORECASE)
_SIGN_WORDS = frozenset(
    [
        "que",
        "q",
        "de",
        "la",
        "el",
        "los",
        "las",
        "y",
        "es",
        "tiene",
        "tengo",
        "mi",
        "mis",
        "le",
        "les",
        "se",
        "por",
        "con",
        "una",
        "un",
        "del",
        "al",
        "pero",
        "muy",
        "ya",
        "su",
        "sus",
        "esta",
        "está",
        "estoy",
        "hijo",
        "hija",
        "niño",
        "niña",
        "duele",
        "dolor",
        "fiebre",
        "calentura",
        "cabeza",
        "panza",
        "hace",
        "desde",
        "también",
        "tb",
        "x",
        "xq",
        "porque",
        "qué",
        "cómo",
        "como",
        "para",
        "pa",
        "mucho",
        "poco",
        "nada",
        "sin",
        "hoy",
        "ayer",
        "noche",
        "mañana",
        "vomito",
        "vomitó",
        "devolvió",
        "hola",
        "gracias",
        "buenas",
        "buenos",
        "días",
        "dias",
        "sí",
        "si",
        "bien",
        "mal",
    ]
)
_WORD = re.compile(r"[^\W\d_]+")


def with_spanish_words(known: Catalogue, folder: Path, is_spanish: Callable[[str], bool]) -> Catalogue:
    """The catalogue with the Spanish phrasings of each term beside the English ones, and the Spanish word
    groups beside the English groups (a Spanish group may not reuse an English group's name). An English
    phrase made only of Spanish words is left out ("coma" is also "eat", "pus" is Spanish already): in a
    Spanish message it would mean what the Spanish words mean."""
    groups = dict(known.groups)
    for row in read_table(folder / "word_groups.csv", ("group", "words")):
        name = row.required("group").lower()
        if name in groups:
            raise row.error("group", f"is {name!r}, already an English group; choose another name")
        groups[name] = tuple(word.strip().lower() for word in row.required("words").split("|") if word.strip())
    spanish: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    terms = {entry.term for entry in known.entries}
    for row in read_table(folder / "side_effects.csv", ("term", "synonyms", "severe_synonyms")):
        term = row.required("term")
        if term not in terms:
            raise row.error("term", f"is {term!r}, not a term of the catalogue (knowledge/side_effects.csv)")
        phrases = phrases_of(row, "synonyms", groups)
        severe = phrases_of(row, "severe_synonyms", groups)
        spanish[term] = (phrases, severe)

    def english(phrases: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(p for p in phrases if not all(map(is_spanish, _PLAIN_WORD.findall(p.replace("'", " ")))))

    def widened(entry: Entry) -> Entry:
        phrases, severe = spanish.get(entry.term, ((), ()))
        return dataclasses.replace(
            entry,
            synonyms=english(entry.synonyms) + phrases,
            severe_synonyms=english(entry.severe_synonyms) + severe,
        )

    return dataclasses.replace(known, entries=tuple(widened(e) for e in known.entries), groups=groups)


class Identifier:
    """Says whether a message is Spanish (lingua over English, Spanish and neighbouring languages)."""

    def __init__(self) -> None:
        from lingua import Language, LanguageDetectorBuilder

        self._spanish, self._english = Language.SPANISH, Language.ENGLISH
        languages = [Language.ENGLISH, Language.SPANISH, Language.PORTUGUESE, Language.FRENCH, Language.ITALIAN,
                     Language.GERMAN]  # fmt: skip
        self._detector: Any = LanguageDetectorBuilder.from_languages(*languages).build()

    def language(self, text: str) -> str:
        """ "es" when Spanish is clearly the likeliest language of `text` (normalised), else "en"."""
        if not _SPANISH_LETTERS.search(text) and _SIGN_WORDS.isdisjoint(_WORD.findall(text.lower())):
            return ENGLISH
        confidence = {value.language: value.value for value in self._detector.compute_language_confidence_values(text)}
        spanish, english = confidence.get(self._spanish, 0.0), confidence.get(self._english, 0.0)
        # Clearly likelier than English, and at or near the top: Portuguese and Italian look much like
        # Spanish, and a message in either is better read with Spanish words than not read at all.
        if spanish >= english + MARGIN and spanish >= max(confidence.values()) - NEAR_TOP:
            return SPANISH
        return ENGLISH


@lru_cache(maxsize=1)
def default_identifier() -> Identifier:
    return Identifier()


def knowledge_folder(english: Path) -> Path:
    folder = english / SPANISH
    if not (folder / "side_effects.csv").is_file():
        raise KnowledgeError(f"{folder}: the Spanish knowledge (side_effects.csv and its companions) is missing")
    return folder
