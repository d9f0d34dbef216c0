"""Whether a message is English the assistant can read. A message it cannot read is `unclear` (a person
reads it), never `none`: a parent writing in Spanish about a fever must not be told nothing was found.

Three signs, any one enough: most letters are not Latin; half or fewer of the words are known English (or
catalogue) words; two or more function words of other languages, or unknown accented words, and more of
them than English function words ("j'ai mal à la tête").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from spacy.tokens import Doc

#: At or below this share of known words, a message is not read as English ("tengo fiebre": 1 of 2).
MIN_KNOWN_SHARE = 0.5
#: Foreign function words (or unknown words with accents) needed to call a message foreign: one alone
#: is too weak, as "hi" is also Catalan and "van" Dutch.
MIN_FOREIGN_WORDS = 2

_LATIN = re.compile(r"[a-zA-Z\u00c0-\u024f]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class Tally:
    """Word counts over the pieces of one message."""

    words: int = 0
    known: int = 0
    foreign: int = 0
    english: int = 0


class LanguageCheck:
    def __init__(self, knows: Callable[[str], bool], foreign: frozenset[str], english: frozenset[str]) -> None:
        self._knows = knows
        self._foreign = foreign
        self._english = english

    def readable(self, text: str, docs: list[Doc]) -> bool:
        """Whether the message (its text, and its pieces as docs with match keys) reads as English."""
        tally = Tally()
        for doc in docs:
            self._count(doc, tally)
        if tally.foreign >= MIN_FOREIGN_WORDS and tally.foreign > tally.english:
            return False
        if tally.words and tally.known / tally.words <= MIN_KNOWN_SHARE:
            return False
        letters = _LETTER.findall(text)
        latin = sum(1 for letter in letters if _LATIN.match(letter))
        return latin >= len(letters) / 2

    def _count(self, doc: Doc, tally: Tally) -> None:
        for token in doc:
            if not token.is_alpha:
                continue
            text = token.lower_
            if text in self._english:
                tally.english += 1
            elif text in self._foreign or (not text.isascii() and not self._knows(text)):
                tally.foreign += 1
            if len(text) > 1 and _LATIN.match(text):
                tally.words += 1
                if self._knows(text) or self._knows(token.norm_):  # not the lemma: it may be a respelling
                    tally.known += 1
