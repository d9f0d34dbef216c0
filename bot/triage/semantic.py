"""The semantic matcher: where the lexicon leaves a clause of a message unexplained, the clause is compared
in meaning with every catalogue phrase, and the nearest phrase's term is taken when it is close enough.

The lexicon stays first (exact, explainable, fast); this step sees only clauses that no catalogue phrase
matched. Its evidence is explicit: the nearest known phrase, the cosine similarity and the threshold,
all of which go into the reason the patient and the care team read. Settings (`knowledge/semantic.csv`):

- `threshold`: the lowest similarity that counts as a match. Chosen on the project's own tuning data
  (eval/tuning_set.jsonl, eval/test_set.jsonl) with the development set kept perfect; see README.
- `emergency_threshold`: a match by meaning alone sends the patient to emergency services only at or
  above this similarity; below it an emergency term is answered as call-now (the care team reads it).
- `cue_threshold`: a clause the complaint cues already read as a complaint naming no side effect ("my ear
  hurts") needs this similarity; a clause that is nothing but such a cue ("I feel off") is not compared.
- Only clauses that talk about the body, feelings, sleep, eating, the toilet, energy, pain, looks or
  behaviour (a complaint cue or a complaint-net word) are compared: "the weather is cold" is not.
- `max_clauses`: clauses compared per message at most, so that a pasted page costs what a message costs
  (the lexicon still reads all of it).

Embeddings ignore negation ("no trouble getting my words out" is close to "cannot get my words out"), so
context decides here as it does for the lexicon (`polarity`): a clause that a denial, a resolution, a
hypothetical, a question, another person or a quotation modifies does not count. Patients state many
complaints with a negation ("no energy", "words would not form", "can't sleep"), so a bare negation that
the nearest phrase itself carries, or one that says the patient is unable to do something, is part of the
complaint, not a denial of it.

Catalogue phrases are embedded once and cached beside the language assets, keyed by the encoder's
fingerprint and the phrases themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from spacy.tokens import Doc

from bot.triage.catalogue import GAP, Catalogue
from bot.triage.embedding import SentenceEncoder
from bot.triage.knowledge import KnowledgeError, read_table, write_atomically

_GROUP = re.compile(r"\{([a-z_]+)\}")
#: Tokens that end a clause: punctuation, and the conjunctions that join two complaints.
_CLAUSE_ENDS = frozenset({",", ";", ":", ".", "!", "?", "(", ")", "-", "–", "—", "/", "…", "and", "but", "also",
                          "plus", "though", "although", "then", "or", "whereas", "while", "because"})  # fmt: skip
#: Words that say a negation belongs to the complaint itself: being unable to do something.
_MODALS = frozenset({"can", "ca", "could", "would", "will", "wo", "must"})
_INABILITY = frozenset({"cannot", "cant", "unable", "wont", "couldnt"})
_BARE_NEGATIONS = frozenset({"no", "not", "n't", "never", "nor", "none", "nothing"})
#: Words a negation cue may carry besides the negation ("didn't", "don't feel").
_AUXILIARIES = frozenset({"do", "does", "did", "is", "are", "was", "were", "am", "has", "have", "had", "been",
                          "feel", "feeling", "ai"})  # fmt: skip
#: After "no", these say a symptom is denied, whatever the nearest phrase: "no trouble getting my words out".
_DIFFICULTY = frozenset({"trouble", "problem", "problems", "difficulty", "difficulties", "issue", "issues",
                         "sign", "signs", "more", "further", "pain", "bother"})  # fmt: skip
_WORDS = re.compile(r"[a-z']+")
#: Clauses that open with these ask something ("can he eat grapefruit?", "how do I change the bag?").
_QUESTION_WORDS = frozenset({"can", "could", "should", "shall", "may", "how", "what", "when", "where", "which",
                             "who", "why"})  # fmt: skip
#: These open a question only when the sentence ends with "?" ("is anyone there?", not "is sore").
_QUESTION_IF_MARKED = frozenset({"is", "are", "will", "would", "do", "does", "did", "am", "was", "were", "has",
                                 "have"})  # fmt: skip
#: When, not what: "teary all day" must be compared as "teary", not matched to "on the loo all day".
_WHEN = re.compile(
    r"\b(?:(?:all|the whole|every|each)\s+(?:day|night|morning|afternoon|evening|week|weekend|time)"
    r"|(?:this|last|yesterday)\s+(?:morning|afternoon|evening|night|week)|today|tonight|yesterday|lately|recently"
    r"|(?:since|from)\s+(?:yesterday|lunch|lunchtime|breakfast|dinner|teatime|last\s+\w+|this\s+\w+|\w+day)"
    r"|for\s+(?:a|an|the|two|three|four|five|a few|a couple of|\d+)?\s*(?:days?|weeks?|hours?|nights?)"
    r"|again|still|now|at the moment|right now)\b",
    re.IGNORECASE,
)


#: Clauses whose nearest phrase is remembered (oldest forgotten first): a few hundred kilobytes.
RECENT = 4096


@dataclass(frozen=True)
class Settings:
    threshold: float
    emergency_threshold: float
    cue_threshold: float
    max_clauses: int


@dataclass(frozen=True)
class Nearest:
    """The catalogue phrase nearest in meaning to a clause: its entry index, its text and the similarity."""

    label: int
    phrase: str
    score: float
    #: The phrase is one of the term's severe wordings ("fighting for breath"): the match is severe too.
    severe: bool = False


@dataclass(frozen=True)
class Clause:
    """A run of tokens between clause ends: token range and character range in the doc's text, and the
    words compared in meaning (without the words that only say when)."""

    start: int
    end: int
    start_char: int
    end_char: int
    text: str


def load_settings(path: Path) -> Settings:
    values: dict[str, str] = {}
    for row in read_table(path, ("setting", "value")):
        values[row.required("setting")] = row.required("value")
    try:
        threshold, emergency = float(values["threshold"]), float(values["emergency_threshold"])
        cue = float(values["cue_threshold"])
        max_clauses = int(values["max_clauses"])
    except (KeyError, ValueError) as error:
        raise KnowledgeError(
            f"{path}: needs rows 'threshold', 'emergency_threshold', 'cue_threshold' (0-1) and 'max_clauses' "
            f"(an integer): {error}"
        ) from error
    if not 0.0 < threshold <= emergency < 1.0 or not threshold <= cue < 1.0 or max_clauses < 1:
        raise KnowledgeError(
            f"{path}: thresholds {threshold}, {emergency}, {cue} must satisfy 0 < threshold <= emergency_threshold"
            " < 1 and threshold <= cue_threshold < 1, and max_clauses be 1 or more"
        )
    return Settings(threshold, emergency, cue, max_clauses)


def readable_phrases(known: Catalogue) -> list[tuple[int, str, bool]]:
    """Every catalogue phrase as a plain sentence: a word group becomes its first member and a gap a space
    ("{stomach} ... {hurt}" is "stomach hurt"), one entry per distinct (term, text), with whether it is
    one of the term's severe wordings."""
    seen: set[tuple[int, str]] = set()
    phrases: list[tuple[int, str, bool]] = []
    for label, entry in enumerate(known.entries):
        plain = [(p, False) for p in (entry.term, *entry.also_named, *entry.synonyms)]
        for phrase, severe in [*[(p, True) for p in entry.severe_synonyms], *plain]:
            text = _GROUP.sub(lambda group: known.groups[group.group(1)][0], phrase).replace(GAP, " ")
            text = " ".join(text.split())
            if text and (label, text) not in seen:
                seen.add((label, text))
                phrases.append((label, text, severe))
    return phrases


class SemanticIndex:
    """Catalogue phrases as unit vectors; finds the nearest phrase to each of a batch of texts."""

    def __init__(self, encoder: SentenceEncoder, phrases: list[tuple[int, str, bool]], cache: Path | None) -> None:
        self._encoder = encoder
        self._labels = np.array([label for label, _, _ in phrases], dtype=np.int32)
        self._texts = [text for _, text, _ in phrases]
        self._severe = [severe for _, _, severe in phrases]
        # Phrases as columns (dimensions x phrases, contiguous): texts x phrases in one product. Only this
        # layout is kept; the cache stores it as is.
        self._columns = _cached_columns(encoder, self._texts, cache)
        self._recent: dict[str, Nearest] = {}

    def nearest(self, texts: list[str]) -> list[Nearest]:
        """The nearest phrase to each text. Recent answers are remembered: a turn's message is read by the
        NLU and again by the channel's safety net, and patients repeat themselves."""
        new = [text for text in dict.fromkeys(texts) if text not in self._recent]
        if new:
            scores = self._encoder.encode(new) @ self._columns
            for text, row, index in zip(new, scores, scores.argmax(axis=1), strict=True):
                label, phrase, severe = int(self._labels[index]), self._texts[index], self._severe[index]
                self._recent[text] = Nearest(label, phrase, float(row[index]), severe)
            while len(self._recent) > RECENT:
                del self._recent[next(iter(self._recent))]
        return [self._recent[text] for text in texts]


def clauses(doc: Doc, covered: Iterable[tuple[int, int]], limit: int) -> list[Clause]:
    """The doc's clauses that no lexicon match touches and that hold a word, at most `limit` of them."""
    taken: set[int] = set()
    for start, end in covered:
        taken.update(range(start, end))
    found: list[Clause] = []

    def close(start: int, end: int) -> None:
        if (
            end > start
            and len(found) < limit
            and not taken.intersection(range(start, end))
            and any(token.is_alpha for token in doc[start:end])
        ):
            span = doc[start:end]
            what = " ".join(_WHEN.sub(" ", span.text).split()) or span.text
            found.append(Clause(start, end, span.start_char, span.end_char, what))

    start = 0
    for token in doc:
        if token.lower_ in _CLAUSE_ENDS:
            close(start, token.i)
            start = token.i + 1
        elif token.is_sent_start and token.i > start:
            close(start, token.i)
            start = token.i
    close(start, len(doc))
    return found


def content_words(doc: Doc, clause: Clause, besides: set[int], stop: frozenset[str]) -> list[int]:
    """The clause's words that say something: not stop words, not the tokens in `besides`, not time words."""
    when = {t.i for m in _WHEN.finditer(doc.text, clause.start_char, clause.end_char)
            for t in doc.char_span(m.start(), m.end(), alignment_mode="expand") or ()}  # fmt: skip
    return [
        i
        for i in range(clause.start, clause.end)
        if doc[i].is_alpha and i not in besides and i not in when and doc[i].lower_ not in stop
    ]


def is_question(doc: Doc, clause: Clause) -> bool:
    """Whether a clause asks something: it, or its sentence, opens with a question word, or with a verb
    and the sentence ends with a question mark."""
    sentence = doc[clause.start].sent
    marked = any(token.text == "?" for token in doc[clause.end : sentence.end])
    for first in {doc[clause.start].lower_, sentence[0].lower_}:  # "should I wait and see if it settles?"
        if first in _QUESTION_WORDS or (first in _QUESTION_IF_MARKED and marked):
            return True
    return False


def negation_is_the_complaint(doc: Doc, cue_start: int, cue_end: int, nearest: Nearest) -> bool:
    """Whether a negation cue inside a clause is part of what the patient complains of, not a denial:
    an inability ("can't sleep", "words would not form", "not able to"), or a bare negation that the
    nearest catalogue phrase carries too ("no energy" near "no energy", "didn't sleep a wink" near "didn't
    sleep"). "No trouble / problems / signs of ..." always denies."""
    if is_inability(doc, cue_start, cue_end):
        return True
    words = [token.lower_ for token in doc[cue_start:cue_end]]
    after = [token.lower_ for token in doc[cue_end : cue_end + 2]]
    negations = [word for word in words if word not in _AUXILIARIES]
    if not negations or not all(word in _BARE_NEGATIONS for word in negations):
        return False
    if after and after[0] in _DIFFICULTY:
        return False
    return phrase_negation(nearest.phrase) == "bare"


def is_inability(doc: Doc, cue_start: int, cue_end: int) -> bool:
    """Whether a negation says someone cannot do something ("can't sleep", "not able to", "won't stop")."""
    first = doc[cue_start].lower_
    before = doc[cue_start - 1].lower_ if cue_start > 0 else ""
    after = [token.lower_ for token in doc[cue_end : cue_end + 2]]
    return before in _MODALS or "able" in after or first in _MODALS or first in _INABILITY


def phrase_negation(phrase: str) -> str:
    """How a catalogue phrase is negated: "bare" ("no energy", "not eating"), "inability" ("can't get my
    breath", "unable to poo"), or "" when it is not."""
    words = _WORDS.findall(phrase.lower().replace("n't", " n't").replace("’", "'"))
    kind = ""
    for index, word in enumerate(words):
        if word in _INABILITY or (word in ("n't", "not") and index > 0 and words[index - 1] in _MODALS):
            kind = kind or "inability"
        elif word in _BARE_NEGATIONS:
            return "bare"
    return kind


def _cached_columns(
    encoder: SentenceEncoder, texts: list[str], cache: Path | None
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The phrases' vectors as the columns of one contiguous array, from the cache when it was written by
    the same encoder for the same phrases in the same layout."""
    key = hashlib.sha256("\n".join([encoder.fingerprint.digest, "columns", *texts]).encode("utf-8")).hexdigest()[:24]
    path = cache / f"semantic-{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        try:
            columns = np.load(path, allow_pickle=False)
            if columns.ndim == 2 and columns.shape[1] == len(texts) and columns.dtype == np.float32:
                return np.ascontiguousarray(columns)
        except (OSError, ValueError):
            pass  # unreadable cache: compute again below
    columns = np.ascontiguousarray(encoder.encode(texts).T)
    if path is not None:
        # A read-only folder only costs the next start-up the same second again.
        with contextlib.suppress(OSError):
            write_atomically(path, lambda out: np.save(out, columns, allow_pickle=False))
    return columns
