"""Token normalisation: turns each token into the key that catalogue phrases are matched on.

A key is the dictionary lemma of the token after SMS spelling (`knowledge/spelling.csv`), British to US
spelling, dropped-g repair ("throwin"), stretched letters ("sooo") and "-ish" ("yellowish"). Tokens that
are still unknown may be corrected to a catalogue word by edit distance; the guards that keep this safe
live here and nowhere else (see `FuzzyPolicy`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import OSA
from spacy.tokens import Doc

from bot.triage.knowledge import read_table

_LETTERS = re.compile(r"^[a-z]+$")
_ELONGATED = re.compile(r"(.)\1{2,}")


@dataclass(frozen=True)
class FuzzyPolicy:
    """When a token may be corrected to a catalogue word, and how far it may be from it.

    - Only alphabetic tokens of `min_length` letters or more: short words are too close to each other
      ("pee"/"see", "wee"/"we", "rash"/"cash" would all be one edit apart).
    - Never a common English word (log probability at least `assets.COMMON_WORD_LOGPROB`): "never" is a
      real word one edit from "fever", "lever" from "fever", "coughed" is fine already.
    - At most one edit (insert, delete, substitute or swap two letters) for tokens shorter than
      `two_edit_length`, two for longer ones: "feaver", "tierd", "nausious", "diarhea", "vomitting".
    - The candidate must start with the same letter: people rarely misspell the first letter, and it
      stops "dairy" becoming "diary"-like near misses across the whole vocabulary.
    """

    min_length: int = 5
    two_edit_length: int = 8

    def max_edits(self, word: str) -> int:
        return 2 if len(word) >= self.two_edit_length else 1


@dataclass(frozen=True)
class Correction:
    """A token that was read as another word."""

    original: str
    corrected: str
    score: float


class Speller:
    """Computes match keys for tokens and records the spelling corrections it made."""

    def __init__(
        self,
        lemma: Callable[[str], str],
        variants: dict[str, str],
        common_words: frozenset[str],
        policy: FuzzyPolicy | None = None,
    ) -> None:
        self._lemma = lemma
        self._variants = variants
        self._common = common_words
        self._policy = policy or FuzzyPolicy()
        self._vocabulary: frozenset[str] = frozenset()
        self._targets: dict[str, list[str]] = {}
        self._cache: dict[str, tuple[str, Correction | None]] = {}

    def set_vocabulary(self, words: Iterable[str]) -> None:
        """The words catalogue phrases are written with: both what they are matched on and what a
        misspelling may be corrected to."""
        vocabulary = {word for word in words if _LETTERS.match(word)}
        # A phrase's word is keyed after its spelling variant ("laboured" -> "labored" -> "labor"): that key
        # must count as known too, or the same word in a message is "corrected" to another key and missed.
        keys = {self._lemma(self._variants.get(word, word)) for word in vocabulary}
        self._vocabulary = frozenset(vocabulary | {self._lemma(word) for word in vocabulary} | keys)
        targets: dict[str, list[str]] = {}
        for word in sorted(vocabulary):
            if len(word) >= self._policy.min_length - 1:
                targets.setdefault(word[0], []).append(word)
        self._targets = targets
        self._cache.clear()

    def knows(self, word: str) -> bool:
        return word in self._common or word in self._vocabulary

    def key(self, norm: str) -> str:
        """The match key of a token's norm, without spelling correction (used for catalogue phrases)."""
        return self._lemma(self._standard(norm))

    def apply(self, doc: Doc) -> dict[int, Correction]:
        """Sets every token's lemma to its match key; returns the corrections by token index."""
        corrections: dict[int, Correction] = {}
        for token in doc:
            cached = self._cache.get(token.norm_)
            if cached is None:
                cached = self._read(token.norm_)
                if len(self._cache) < 100_000:
                    self._cache[token.norm_] = cached
            key, correction = cached
            token.lemma_ = key
            if correction is not None:
                corrections[token.i] = correction
        return corrections

    def _standard(self, norm: str) -> str:
        word = self._variants.get(norm, norm)
        if word.endswith("ish") and word[:-3] in self._vocabulary:  # "yellowish", "greyish"
            return word[:-3]
        if word in self._vocabulary or word in self._common or not _LETTERS.match(word):
            return word
        if word.endswith("in") and self.knows(word + "g"):
            return word + "g"
        if _ELONGATED.search(word):
            for squeeze in (r"\1\1", r"\1"):
                shorter = _ELONGATED.sub(squeeze, word)
                if self.knows(shorter):
                    return shorter
        return word

    def _read(self, norm: str) -> tuple[str, Correction | None]:
        word = self._standard(norm)
        key = self._lemma(word)
        if key in self._vocabulary or not self._may_correct(word):
            return key, None
        candidates = self._targets.get(word[0], [])
        best = process.extractOne(word, candidates, scorer=OSA.distance, score_cutoff=self._policy.max_edits(word))
        if best is None:
            return key, None
        target, distance, _ = best
        score = 1.0 - distance / max(len(word), len(target))
        return self._lemma(target), Correction(norm, target, score)

    def _may_correct(self, word: str) -> bool:
        return len(word) >= self._policy.min_length and _LETTERS.match(word) is not None and word not in self._common


def load_variants(path: Path, british_to_us: dict[str, str]) -> dict[str, str]:
    """SMS and other spelling variants from the knowledge table, over spaCy's British-to-US table."""
    variants = dict(british_to_us)
    for row in read_table(path, ("variant", "standard")):
        variants[row.required("variant").lower()] = row.required("standard").lower()
    return variants
