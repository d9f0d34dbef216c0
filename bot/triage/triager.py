"""The triage engine: text in, `Triage` out. Wires the text normaliser, the catalogue, the spelling
normaliser, the phrase matcher, ConText and the thermometer together, and makes any input, however odd,
safe to process. Matching runs on the normalised text (`normalise`); every span and offset of the result
is mapped back to the patient's original text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

from spacy.tokens import Doc

from bot.triage import assets, catalogue, temperature
from bot.triage.catalogue import Catalogue
from bot.triage.context import EXCLUDING, Context, Cue
from bot.triage.knowledge import knowledge_dir, read_table
from bot.triage.language import LanguageCheck
from bot.triage.matcher import Match, PhraseIndex
from bot.triage.normalise import Normalised, normalise, written_form
from bot.triage.result import Symptom, Triage
from bot.triage.rules import Complaint, Finding, Policy
from bot.triage.spelling import Speller, load_variants

#: Long texts are read in pieces of about this many characters, cut at a line or sentence end where
#: possible: context cues never reach across sentences, and ConText's cost grows with the square of the
#: cues in one piece, so a 100 KB paste stays fast.
CHUNK_CHARS = 2000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_WORD = re.compile(r"[a-z]+")


class Triager:
    """Triage of patient messages against the side-effect catalogue."""

    def __init__(self, knowledge: Path | None = None, assets_folder: Path | None = None) -> None:
        folder = knowledge or knowledge_dir()
        self.catalogue = catalogue.load(folder)
        self._nlp, lemma = assets.load_core_pipeline(assets_folder)
        self._sentencizer = self._nlp.get_pipe("sentencizer")
        self._speller = Speller(
            lemma,
            load_variants(folder / "spelling.csv", assets.lookups_table("en_lexeme_norm")),
            assets.load_common_words(assets_folder),
        )

        keys: dict[str, list[str]] = {}

        def keyer(text: str) -> list[str]:
            if text not in keys:  # phrases repeat their words thousands of times
                keys[text] = [self._speller.key(token.norm_) for token in self._nlp.make_doc(text.lower())]
            return keys[text]

        cue_phrases = load_phrases(folder / "complaint_cues.csv")
        # The vocabulary must be known before any phrase is compiled: it decides which words are left
        # as written and which may be respelled, for phrases and messages alike.
        self._speller.set_vocabulary(_words(self.catalogue, cue_phrases))
        groups = self.catalogue.groups
        self._symptoms = PhraseIndex(self._nlp.vocab, keyer, groups, "symptom")
        for index, entry in enumerate(self.catalogue.entries):
            for phrase in (entry.term, *entry.also_named, *entry.synonyms):
                self._symptoms.add(index, phrase)
            for phrase in entry.severe_synonyms:
                self._symptoms.add(index, phrase, severe=True)
        self._complaints = PhraseIndex(self._nlp.vocab, keyer, groups, "complaint")
        for phrase in cue_phrases:
            self._complaints.add(0, phrase)
        self._context = Context(self._nlp, folder / "context_rules.json", self._speller.key)
        self._thermometer = temperature.load(folder / "temperature.csv")
        self._policy = Policy(self.catalogue, self._thermometer.terms)
        self._language = LanguageCheck(
            self._speller.knows, assets.load_foreign_words(assets_folder), assets.english_stop_words()
        )

    @property
    def temperature_terms(self) -> frozenset[str]:
        """Catalogue terms a thermometer reading decides (fever, extremely high fever)."""
        return self._thermometer.terms

    def triage(self, text: str) -> Triage:
        """Triage one message. Never raises on odd text: anything unreadable becomes `unclear`."""
        original = text if isinstance(text, str) else str(text)
        plain = normalise(original)
        clean = plain.text
        findings: list[Finding] = []
        complaints: list[Complaint] = []
        docs: list[Doc] = []
        for offset, piece in chunks(clean, CHUNK_CHARS):
            doc = self._read(piece)
            corrections = self._speller.apply(doc)
            symptoms = self._symptoms.find(doc)
            complaint_matches = self._complaints.find(doc)
            targets = symptoms + complaint_matches
            found_cues = self._context.cues(doc, [(m.start, m.end) for m in targets])
            cues = [_within_line(plain, offset, doc, m, c) for m, c in zip(targets, found_cues, strict=True)]
            for match, match_cues in zip(symptoms, cues[: len(symptoms)], strict=True):
                start, end = offset + doc[match.start].idx, offset + doc[match.end - 1].idx + len(doc[match.end - 1])
                findings.append(
                    Finding(
                        entry=self.catalogue.entries[match.phrase.label],
                        phrase=match.phrase.text,
                        severe_phrase=match.phrase.severe,
                        span=clean[start:end],
                        start=start,
                        end=end,
                        cues=match_cues,
                        corrections=tuple(corrections[i] for i in sorted(match.tokens) if i in corrections),
                    )
                )
            for match, match_cues in zip(complaint_matches, cues[len(symptoms) :], strict=True):
                complaints.append(Complaint(_text(doc, match), match_cues))
            docs.append(doc)
        decided = self._policy.decide(
            findings, complaints, self._thermometer.read(clean), lambda: self._readable(plain, docs)
        )
        return _in_original(decided, plain)

    def _readable(self, plain: Normalised, docs: list[Doc]) -> bool:
        """The language check sees the letters as written (accents and other scripts kept): folding them
        for matching must not make French or Russian look like English."""
        if plain.text == plain.original:
            return self._language.readable(plain.text, docs)
        written = written_form(plain.original)
        written_docs = [self._read(piece) for _, piece in chunks(sanitize(written), CHUNK_CHARS)]
        return self._language.readable(written, written_docs)

    def _read(self, text: str) -> Doc:
        doc = self._nlp.make_doc(text.lower() if len(text.lower()) == len(text) else _lower_each(text))
        return self._sentencizer(doc)


def load_phrases(path: Path) -> list[str]:
    """The `phrase` column of a knowledge table (complaint cues), in the catalogue's phrase syntax."""
    return [row.required("phrase").lower() for row in read_table(path, ("phrase",))]


def _words(known: Catalogue, extra: list[str]) -> set[str]:
    phrases = [p for e in known.entries for p in (e.term, *e.also_named, *e.synonyms, *e.severe_synonyms)]
    words = {word for phrase in phrases + extra for word in _WORD.findall(phrase)}
    return words | {word for members in known.groups.values() for word in members}


def sanitize(text: str) -> str:
    """Same length as `text`: control characters and lone surrogates become spaces, so offsets hold."""
    return _CONTROL.sub(" ", text)


def chunks(text: str, size: int) -> Iterator[tuple[int, str]]:
    """Pieces of at most about `size` characters with their offsets, cut at a line or sentence end, else
    at a space, else anywhere."""
    start = 0
    while len(text) - start > size:
        window = text[start : start + size]
        cut = max(window.rfind("\n"), window.rfind(". "), window.rfind("? "), window.rfind("! "))
        if cut < size // 2:
            cut = window.rfind(" ")
        if cut < size // 2:
            cut = size - 1
        yield start, text[start : start + cut + 1]
        start += cut + 1
    if start < len(text) or start == 0:
        yield start, text[start:]


def _within_line(plain: Normalised, offset: int, doc: Doc, match: Match, cues: tuple[Cue, ...]) -> tuple[Cue, ...]:
    """Drops denials, resolutions and hypotheticals that reach the match across a line break: a list
    typed on separate lines ("no fever" / "headache") is separate statements."""
    start = offset + doc[match.start].idx
    end = offset + doc[match.end - 1].idx + len(doc[match.end - 1])
    kept = []
    for cue in cues:
        cue_start, cue_end = offset + cue.start, offset + cue.end
        if cue.category in EXCLUDING and (
            plain.crosses_break(cue_end, start) if cue_end <= start else plain.crosses_break(end, cue_start)
        ):
            continue
        kept.append(cue)
    return tuple(kept)


def _in_original(decided: Triage, plain: Normalised) -> Triage:
    """The same decision with every span and offset pointing into the patient's original text."""
    if plain.text == plain.original:
        return decided

    def moved(symptom: Symptom) -> Symptom:
        start, end = plain.origin(symptom.start, symptom.end)
        return dataclasses.replace(symptom, start=start, end=end, span=sanitize(plain.original[start:end]))

    temperature = decided.temperature
    if temperature is not None:
        start, end = plain.origin(temperature.start, temperature.end)
        temperature = dataclasses.replace(temperature, start=start, end=end, span=sanitize(plain.original[start:end]))
    return dataclasses.replace(
        decided,
        symptoms=tuple(moved(s) for s in decided.symptoms),
        excluded=tuple(moved(s) for s in decided.excluded),
        temperature=temperature,
    )


def _lower_each(text: str) -> str:
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _text(doc: Doc, match: Match) -> str:
    return doc[match.start : match.end].text
