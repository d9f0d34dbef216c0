"""The evaluation's inputs: vignette files (`{"text", "levels", "terms"}` per line, as in the shared
development set) and the held-out lay phrases the project's test set is partly built from.

A held-out phrase is a lay phrasing the catalogue must not list, so that the test set measures how the
triage copes with words it was never given. `listed_in` decides whether the catalogue already covers
a phrase: any of the term's own phrases (term, other monograph wordings, synonyms) found inside it,
with word groups expanded, gaps of up to `MAX_GAP` words, apostrophes dropped and word endings
stemmed ("shivering" is "shiver"), so that a synonym added later in any spelling is caught; or the
phrase itself cut out of one of them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.triage.catalogue import GAP, Catalogue, Entry
from bot.triage.result import Level

ROOT = Path(__file__).resolve().parents[2]
DEV_SET = ROOT.parent / "shared" / "eval" / "dev_vignettes.jsonl"
TEST_SET = ROOT / "eval" / "test_set.jsonl"
#: Written before the semantic matcher and the complaint net were tuned, by someone who saw only the
#: catalogue's terms, never its lay words: nothing was tuned on it.
FRESH_SET = ROOT / "eval" / "fresh_set.jsonl"
#: Spanish messages, written before the Spanish vocabulary was tuned, by someone who saw only the catalogue's
#: terms: the development set may be tuned on, the test set is held out.
ES_DEV_SET = ROOT / "eval" / "es_dev_set.jsonl"
ES_TEST_SET = ROOT / "eval" / "es_test_set.jsonl"
#: What the semantic matcher's thresholds were chosen on, with the development and test sets.
TUNING_SET = ROOT / "eval" / "tuning_set.jsonl"
HELDOUT_PHRASES = ROOT / "eval" / "heldout_phrases.csv"
#: The matcher's own gap (bot/triage/matcher.py): a synonym with " ... " spans up to three words.
MAX_GAP = 3
_WORD = re.compile(r"[\w']+")
_GROUP = re.compile(r"^\{([a-z_]+)\}$")
_SUFFIXES = ("ing", "ed", "es", "s", "e", "y")


@dataclass(frozen=True)
class Case:
    """One message with the levels a correct triage may give and the terms it must find (each a set of
    acceptable alternatives). `tags` say what the message tests (heldout, negated, misspelled, ...)."""

    text: str
    levels: tuple[Level, ...]
    terms: tuple[tuple[str, ...], ...]
    tags: tuple[str, ...] = field(default=())

    @property
    def expected(self) -> Level:
        """The most urgent acceptable level: the confusion matrix's row."""
        return max(self.levels, key=lambda level: level.rank)


@dataclass(frozen=True)
class HeldOut:
    term: str
    phrase: str


class CaseError(ValueError):
    """A vignette or held-out file is malformed; the message names the file and line."""


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
            levels = tuple(Level.parse(level) for level in record["levels"])
            terms = tuple(tuple(str(term) for term in group) for group in record["terms"])
            case = Case(str(record["text"]), levels, terms, tuple(str(tag) for tag in record.get("tags", [])))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CaseError(
                f'{where}: {exc!r}; expected {{"text": str, "levels": [level], "terms": [[term]]}}'
            ) from exc
        if not case.levels or any(not group for group in case.terms):
            raise CaseError(f"{where}: 'levels' and every group in 'terms' must be non-empty")
        cases.append(case)
    return cases


def load_heldout(path: Path = HELDOUT_PHRASES) -> list[HeldOut]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"term", "phrase"} <= set(rows[0]):
        raise CaseError(f"{path}: the header must have the columns term, phrase")
    return [HeldOut(row["term"].strip(), row["phrase"].strip()) for row in rows]


def listed_in(catalogue: Catalogue, heldout: HeldOut) -> str | None:
    """The catalogue phrase of the held-out term found inside the held-out phrase, or None."""
    words = _stems(heldout.phrase)
    entry = catalogue.entry(heldout.term)
    for phrase in _phrases(entry):
        parts = [_slots(part, catalogue.groups) for part in phrase.split(GAP)]
        if any(_found(words, parts, start) for start in range(len(words))):
            return phrase
        if words and any(_within(words, part) for part in parts):
            return phrase
    return None


def _within(words: Sequence[str], slots: Sequence[frozenset[str]]) -> bool:
    """Whether the words make up a run of one part of a catalogue phrase ("bunged up" in "bunged up
    down below"): a phrase cut out of a listed one is not held out either."""
    return any(
        all(word in slots[start + i] for i, word in enumerate(words)) for start in range(len(slots) - len(words) + 1)
    )


def _phrases(entry: Entry) -> tuple[str, ...]:
    return (entry.term, *entry.also_named, *entry.synonyms, *entry.severe_synonyms)


def _stems(text: str) -> list[str]:
    return [_stem(word) for word in _WORD.findall(text.lower().replace("'", "").replace("’", ""))]


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _slots(part: str, groups: dict[str, tuple[str, ...]]) -> list[frozenset[str]]:
    """One set of acceptable stems per word of a gap-free part: a `{group}` is any of its words."""
    slots = []
    for word in part.split():
        group = _GROUP.match(word)
        if group:
            slots.append(frozenset(stem for member in groups[group.group(1)] for stem in _stems(member)))
        else:
            slots.extend(frozenset([stem]) for stem in _stems(word))
    return slots


def _found(words: Sequence[str], parts: Sequence[Sequence[frozenset[str]]], start: int) -> bool:
    """Whether `parts` occur in `words` from `start`, in order, with at most MAX_GAP words between."""
    first, rest = parts[0], parts[1:]
    if not first:  # a part made only of characters that are not words (an emoji)
        return False
    end = start + len(first)
    if end > len(words) or not all(words[start + i] in slot for i, slot in enumerate(first)):
        return False
    if not rest:
        return True
    return any(_found(words, rest, end + gap) for gap in range(MAX_GAP + 1))
