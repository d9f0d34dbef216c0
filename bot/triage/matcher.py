"""Finds catalogue phrases in a message: spaCy's PhraseMatcher on match keys (lemmas after spelling
normalisation), plus the two extensions of the phrase syntax that patients' grammar needs.

Phrase syntax (the `synonyms` columns of `knowledge/`):
- words are matched on their lemma, case-insensitively: "throw up" finds "threw up" and "throwing up";
- `{group}` is any one word of a group in `knowledge/word_groups.csv`: "{stomach} ... {hurt}";
- ` ... ` lets up to `MAX_GAP` other words stand between two parts, in the same sentence:
  "head ... hurt" finds "my head really hurts".

When matches overlap, a match whose matched words are all part of a longer match is dropped ("lower
back pain" is one symptom, not also "back pain"); matches that only share a word both stand.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc
from spacy.vocab import Vocab

from bot.triage.catalogue import GAP

#: How many words may stand in a ` ... ` gap. Three covers "my head really hurts" and "pain in my
#: tummy"; more starts joining words from different complaints ("my head is fine but my legs hurt").
MAX_GAP = 3
_GROUP = re.compile(r"^\{([a-z_]+)\}$")

#: Turns the text of one phrase word into its match keys (one per token).
Keyer = Callable[[str], list[str]]


@dataclass(frozen=True)
class Phrase:
    """A phrase of the catalogue, compiled: the label it belongs to and its parts in order."""

    label: int
    text: str
    severe: bool
    parts: tuple[int, ...]

    @property
    def later_parts(self) -> frozenset[int]:
        return frozenset(self.parts[1:])


@dataclass(frozen=True)
class Match:
    """A phrase found in a doc: token range, and the tokens that matched (gaps excluded)."""

    phrase: Phrase
    start: int
    end: int
    tokens: frozenset[int]


class PhraseIndex:
    """Compiles phrases into PhraseMatcher parts and finds them, gaps and overlaps resolved."""

    def __init__(self, vocab: Vocab, keyer: Keyer, groups: dict[str, tuple[str, ...]], name: str) -> None:
        self._vocab = vocab
        self._keyer = keyer
        self._groups = groups
        self._name = name
        self._matcher = PhraseMatcher(vocab, attr="LEMMA")
        self._part_ids: dict[tuple[tuple[str, ...], ...], int] = {}
        self._part_of_match_id: dict[int, int] = {}
        #: By first part: the one-part phrases, and the phrases with gaps with the set of their later parts.
        self._phrases_by_first: dict[int, tuple[list[Phrase], list[tuple[Phrase, frozenset[int]]]]] = {}

    def add(self, label: int, text: str, *, severe: bool = False) -> None:
        """Adds one phrase; `label` is the caller's index of what the phrase stands for."""
        parts = tuple(self._part(chunk) for chunk in text.split(GAP))
        phrase = Phrase(label, text, severe, parts)
        single, gapped = self._phrases_by_first.setdefault(parts[0], ([], []))
        if len(parts) == 1:
            single.append(phrase)
        else:
            gapped.append((phrase, phrase.later_parts))

    def find(self, doc: Doc) -> list[Match]:
        hits: dict[int, list[tuple[int, int]]] = {}
        part_of = self._part_of_match_id
        for match_id, start, end in self._matcher(doc):
            part = part_of[match_id]
            if part in hits:
                hits[part].append((start, end))
            else:
                hits[part] = [(start, end)]
        found: list[Match] = []
        sentence_starts: list[int] | None = None
        present = hits.keys()
        for first, spans in hits.items():
            by_first = self._phrases_by_first.get(first)
            if by_first is None:
                continue
            single, gapped = by_first
            if single:
                words = [(start, end, frozenset(range(start, end))) for start, end in spans]
                found.extend(Match(phrase, start, end, tokens) for phrase in single for start, end, tokens in words)
            for phrase, later in gapped:
                if not later <= present:
                    continue
                if sentence_starts is None:
                    sentence_starts = doc.to_array("SENT_START").tolist()
                for start, end in spans:
                    tokens = frozenset(range(start, end))
                    found.extend(self._extend(sentence_starts, phrase, hits, 1, start, end, tokens))
        return resolve_overlaps(found)

    def _extend(
        self,
        sentence_starts: list[int],
        phrase: Phrase,
        hits: dict[int, list[tuple[int, int]]],
        index: int,
        start: int,
        end: int,
        tokens: frozenset[int],
    ) -> list[Match]:
        if index == len(phrase.parts):
            return [Match(phrase, start, end, tokens)]
        found: list[Match] = []
        for next_start, next_end in hits.get(phrase.parts[index], ()):
            gap = next_start - end
            if 0 <= gap <= MAX_GAP and 1 not in sentence_starts[end : next_start + 1]:
                more = tokens | frozenset(range(next_start, next_end))
                found.extend(self._extend(sentence_starts, phrase, hits, index + 1, start, next_end, more))
        return found

    def _part(self, chunk: str) -> int:
        """Registers every concrete key sequence of one gap-free part; returns the part's id."""
        alternatives: list[list[tuple[str, ...]]] = []
        for word in chunk.split():
            group = _GROUP.match(word)
            members = self._groups[group.group(1)] if group else (word,)
            options = [tuple(self._keyer(member)) for member in members]
            alternatives.append([option for option in options if option])
        sequences = [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*alternatives)]
        key = tuple(sorted(set(sequences)))
        part_id = self._part_ids.get(key)
        if part_id is not None:
            return part_id
        part_id = self._part_ids[key] = len(self._part_ids)
        label = f"{self._name}:{part_id}"
        docs = [Doc(self._vocab, words=list(sequence), lemmas=list(sequence)) for sequence in key]
        self._matcher.add(label, docs)
        self._part_of_match_id[self._vocab.strings[label]] = part_id
        return part_id


def resolve_overlaps(matches: Sequence[Match]) -> list[Match]:
    """Drops every match whose matched tokens all belong to a longer (or equal, earlier) match."""
    ordered = sorted(matches, key=lambda m: (-len(m.tokens), not m.phrase.severe, m.start, m.phrase.label))
    kept: list[Match] = []
    for match in ordered:
        if not any(match.tokens <= other.tokens for other in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: (m.start, m.end))
