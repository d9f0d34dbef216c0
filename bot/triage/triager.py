"""The triage engine: text in, `Triage` out. Wires the text normaliser, the catalogue, the spelling
normaliser, the phrase matcher, ConText and the thermometer together, and makes any input, however odd,
safe to process. Matching runs on the normalised text (`normalise`); every span and offset of the result
is mapped back to the patient's original text.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from spacy.tokens import Doc

from bot.triage import assets, catalogue, semantic, spanish, temperature
from bot.triage.assets import fold_accents
from bot.triage.catalogue import Catalogue
from bot.triage.context import ASKING, EXCLUDING, NEGATED, QUESTION, WELL, Context, Cue
from bot.triage.embedding import default_encoder
from bot.triage.knowledge import knowledge_dir, read_table
from bot.triage.language import LanguageCheck
from bot.triage.matcher import Match, Phrase, PhraseIndex
from bot.triage.normalise import Normalised, normalise, written_form
from bot.triage.result import Symptom, Triage
from bot.triage.rules import Complaint, Finding, Policy, Resemblance
from bot.triage.semantic import Clause, Nearest, SemanticIndex
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
log = logging.getLogger(__name__)


class Triager:
    """Triage of patient messages against the side-effect catalogue."""

    def __init__(
        self,
        knowledge: Path | None = None,
        assets_folder: Path | None = None,
        *,
        semantic_matching: bool | None = None,
        language: str = spanish.ENGLISH,
    ) -> None:
        """`semantic_matching` None follows `TRIAGE_SEMANTIC` (default on; "0" for the lexicon alone).
        `language` "es" reads Spanish with the Spanish words of `knowledge/es/` beside the English ones; the
        English triager hands Spanish messages to one of these by itself."""
        folder = knowledge or knowledge_dir()
        self.language = language
        self._knowledge, self._assets_folder, self._semantic_matching = folder, assets_folder, semantic_matching
        self._spanish: Triager | None = None
        self._spanish_lock = threading.Lock()
        self._spanish_failed = False
        english = catalogue.load(folder)
        folders = [folder]
        if language == spanish.SPANISH:
            words = spanish.knowledge_folder(folder)
            folders.append(words)
            self._nlp, lemma, common, is_spanish = assets.load_spanish_pipeline(assets_folder)
            self.catalogue = spanish.with_spanish_words(english, words, is_spanish)
            variants = load_variants(words / "spelling.csv", {})
            stop = assets.english_stop_words() | assets.spanish_stop_words()
        else:
            self.catalogue = english
            self._nlp, lemma = assets.load_core_pipeline(assets_folder)
            variants = load_variants(folder / "spelling.csv", assets.lookups_table("en_lexeme_norm"))
            common = assets.load_common_words(assets_folder)
            stop = assets.english_stop_words()
        self._sentencizer = self._nlp.get_pipe("sentencizer")
        self._speller = Speller(lemma, variants, common)

        keys: dict[str, list[str]] = {}

        def keyer(text: str) -> list[str]:
            if text not in keys:  # phrases repeat their words thousands of times
                keys[text] = [self._speller.key(token.norm_) for token in self._nlp.make_doc(text.lower())]
            return keys[text]

        cue_phrases = [p for f in folders for p in load_phrases(f / "complaint_cues.csv")]
        not_symptom_phrases = [p for f in folders for p in load_phrases(f / "non_symptoms.csv")]
        wellbeing_phrases = [p for f in folders for p in load_phrases(f / "wellbeing_cues.csv")]
        topics = {
            fold_accents(row.required("phrase")): row.required("topic")
            for f in folders
            for row in read_table(f / "complaint_topics.csv", ("phrase", "topic"))
        }
        # The vocabulary must be known before any phrase is compiled: it decides which words are left
        # as written and which may be respelled, for phrases and messages alike.
        self._speller.set_vocabulary(
            _words(self.catalogue, cue_phrases + not_symptom_phrases + wellbeing_phrases + list(topics))
        )
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
        self._wellbeing = PhraseIndex(self._nlp.vocab, keyer, groups, "wellbeing")
        for phrase in wellbeing_phrases:
            self._wellbeing.add(0, phrase)
        # Everyday words of the complaint net, matched as written ("heading" is not "head").
        self._topics = topics
        # Words that contain a symptom's words but are not one ("flu shot" is a vaccine, not the flu).
        self._not_symptoms = PhraseIndex(self._nlp.vocab, keyer, groups, "not_symptom")
        for phrase in not_symptom_phrases:
            self._not_symptoms.add(0, phrase)
        self._context = Context(self._nlp, [f / "context_rules.json" for f in folders], self._speller.key)
        self._thermometer = temperature.load(folder / "temperature.csv")
        self._policy = Policy(self.catalogue, self._thermometer.terms)
        if semantic_matching is None:
            semantic_matching = os.environ.get("TRIAGE_SEMANTIC", "1").strip() != "0"
        self._semantic_settings = semantic.load_settings(folder / "semantic.csv")
        self._semantic: SemanticIndex | None = None
        if semantic_matching:
            self._semantic = SemanticIndex(
                default_encoder(), semantic.readable_phrases(self.catalogue), assets.assets_dir()
            )
        self._stop = stop
        #: Match keys a denial in a phrase's gap must contain ("aren't" holds "not"): the cheap check first.
        self._negation_keys = frozenset(self._speller.key(word) for word in ("no", "not", "n't", "never", "nor"))
        self._language_check = LanguageCheck(
            self._speller.knows, assets.load_foreign_words(assets_folder), assets.english_stop_words()
        )
        keys.clear()  # the phrases are compiled: their words' keys are not needed again (a few MB)

    @property
    def temperature_terms(self) -> frozenset[str]:
        """Catalogue terms a thermometer reading decides (fever, extremely high fever)."""
        return self._thermometer.terms

    def triage(self, text: str, *, language: str | None = None) -> Triage:
        """Triage one message. Never raises on odd text: anything unreadable becomes `unclear`. `language`
        ("en" or "es") reads the message in that language without identifying it: for text put together
        from a conversation whose message was already identified (the action server's follow-ups)."""
        original = text if isinstance(text, str) else str(text)
        plain = normalise(original)
        if self.language == spanish.ENGLISH and language != spanish.ENGLISH:
            if language is None:
                written = written_form(original) if plain.text != original else original  # accents kept
                language = spanish.default_identifier().language(written)
            if language == spanish.SPANISH:
                reader = self.spanish_triager()
                if reader is not None:
                    return reader.triage(original)
        clean = plain.text
        findings: list[Finding] = []
        complaints: list[Complaint] = []
        docs: list[Doc] = []
        clause_budget = self._semantic_settings.max_clauses
        for offset, piece in chunks(clean, CHUNK_CHARS):
            doc = self._read(piece)
            corrections = self._speller.apply(doc)
            look_alikes = self._not_symptoms.find(doc)
            symptoms = _outside(self._symptoms.find(doc), look_alikes)
            symptom_cues = [
                _pointed_at(doc, m, _within_line(plain, offset, doc, m.start, m.end, c)) + self._gap_denials(doc, m)
                for m, c in zip(symptoms, self._context.cues(doc, [(m.start, m.end) for m in symptoms]), strict=True)
            ]
            for match, match_cues in zip(symptoms, symptom_cues, strict=True):
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
            cue_matches = _not_within(self._complaints.find(doc), symptoms)
            resembling = self._resembling(doc, symptoms + look_alikes, cue_matches, clause_budget)
            clause_budget -= len(resembling)
            # A clause read by meaning is explained by that reading, counted or set aside.
            compared = {i for clause, _ in resembling for i in range(clause.start, clause.end)}
            topic_matches = [m for m in _topic_words(doc, self._topics, symptoms) if m.start not in compared]
            if any(
                not any(cue.category in EXCLUDING for cue in cues)
                and self.catalogue.entries[m.phrase.label].term
                not in self._thermometer.terms  # a reading below fever may still set those aside
                for m, cues in zip(symptoms, symptom_cues, strict=True)
            ):
                topic_matches = cue_matches = []  # complaint words matter only when no symptom counts
            asides = self._not_complaints(doc, {m.start for m in topic_matches} | {c.start for c, _ in resembling})
            # Complaint words are read in a pass of their own: ConText drops a cue that overlaps any target,
            # and "worried about" (a complaint) must not silence "something to worry about" for a symptom.
            complaint_matches = cue_matches + topic_matches
            complaint_cues = self._context.cues(doc, [(m.start, m.end) for m in complaint_matches])
            for match, match_cues in zip(complaint_matches, complaint_cues, strict=True):
                match_cues = _within_line(plain, offset, doc, match.start, match.end, match_cues)
                topic = self._topics.get(match.phrase.text, "") if match.phrase.label < 0 else ""
                if topic:
                    match_cues = match_cues + asides.get(match.start, ())
                complaints.append(Complaint(_text(doc, match), match_cues, topic))
            clause_cues = self._clause_cues(doc, [clause for clause, _ in resembling])
            for (clause, nearest), cues_of_clause in zip(resembling, clause_cues, strict=True):
                kept = _within_line(plain, offset, doc, clause.start, clause.end, cues_of_clause)
                kept = kept + asides.get(clause.start, ())
                findings.append(self._resemblance_finding(doc, piece, offset, clause, nearest, kept))
            docs.append(doc)
        if any(f.resemblance is not None for f in findings) and not self._readable(plain, docs):
            # Meanings are compared only in languages the assistant reads and was measured on: a message
            # it cannot read is `unclear` and goes to a person, whatever the encoder makes of it.
            findings = [f for f in findings if f.resemblance is None]
        decided = self._policy.decide(
            findings, complaints, self._thermometer.read(clean), lambda: self._readable(plain, docs)
        )
        return _in_original(dataclasses.replace(decided, language=self.language), plain)

    def spanish_triager(self) -> Triager | None:
        """The triager for Spanish messages, built on first need (about a second) with the same settings;
        None if it cannot be built, and then Spanish is read as a language the assistant does not read
        (`unclear`, a person reads it): a message is never left unanswered."""
        with self._spanish_lock:
            if self._spanish is None and not self._spanish_failed:
                try:
                    self._spanish = Triager(
                        self._knowledge,
                        self._assets_folder,
                        semantic_matching=self._semantic_matching,
                        language=spanish.SPANISH,
                    )
                except Exception:
                    self._spanish_failed = True
                    log.exception("the Spanish triager could not be built; Spanish messages go to a person")
            return self._spanish

    def _resembling(
        self, doc: Doc, explained: list[Match], cues: list[Match], budget: int
    ) -> list[tuple[Clause, Nearest]]:
        """Clauses the lexicon left unexplained that talk about the body or daily life (a complaint cue or a
        complaint-net word), with their nearest catalogue phrase when it is close enough (see `semantic`)."""
        if self._semantic is None or budget <= 0:
            return []
        if not cues and not any(token.lower_ in self._topics for token in doc):
            return []  # nothing about the body or daily life: no clause would be compared
        settings = self._semantic_settings
        cue_tokens = {i for m in cues for i in range(m.start, m.end)}
        asked: list[tuple[Clause, float]] = []
        for clause in semantic.clauses(doc, [(m.start, m.end) for m in explained], budget):
            words = range(clause.start, clause.end)
            if any(i in cue_tokens for i in words):
                if not semantic.content_words(doc, clause, cue_tokens, self._stop):
                    continue  # "I feel off": a complaint that names nothing; the net makes it unclear
                asked.append((clause, settings.cue_threshold))
            elif any(doc[i].lower_ in self._topics for i in words):
                asked.append((clause, settings.threshold))
        nearest = self._semantic.nearest([clause.text for clause, _ in asked])
        return [(clause, near) for (clause, bar), near in zip(asked, nearest, strict=True) if near.score >= bar]

    def _not_complaints(self, doc: Doc, tokens: set[int]) -> dict[int, tuple[Cue, ...]]:
        """For each token of a clause that says something is going well ("he slept well") or that asks
        something ("can he eat grapefruit?"), the cue saying so. Such clauses set aside the complaint
        net's everyday words and the semantic matcher's guesses, never a symptom the lexicon found."""
        found: dict[int, tuple[Cue, ...]] = {}
        if not tokens:
            return found
        well = self._wellbeing.find(doc)
        for clause in semantic.clauses(doc, (), len(doc) + 1):
            if not any(clause.start <= i < clause.end for i in tokens):
                continue
            words = doc[clause.start : clause.end]
            cues = [
                Cue(WELL, doc[m.start : m.end].text, doc[m.start].idx, doc[m.end - 1].idx + len(doc[m.end - 1]))
                for m in well
                if clause.start <= m.start and m.end <= clause.end
            ]
            if semantic.is_question(doc, clause):
                cues.append(Cue(ASKING, words[0].text, words[0].idx, words[0].idx + len(words[0])))
            if cues:
                for index in range(clause.start, clause.end):
                    found[index] = tuple(cues)
        return found

    def _gap_denials(self, doc: Doc, match: Match) -> tuple[Cue, ...]:
        """Denials inside a phrase's gap ("my eyes aren't yellow" for "eyes ... yellow"): ConText drops
        cues inside a target, which is right for "not eating" but not for the words a gap skipped. A
        negation after "can", "won't" ... ("can't stop shaking") says how bad, not that it is absent."""
        gap = [i for i in range(match.start, match.end) if i not in match.tokens]
        if not gap or not any(doc[i].lemma_ in self._negation_keys for i in gap):
            return ()
        after_gap = sorted(i for i in match.tokens if i > gap[0])
        found = self._context.cues(doc, [(after_gap[0], match.end)], within=True)[0]
        first, last = doc[gap[0]].idx, doc[gap[-1]].idx + len(doc[gap[-1]])
        denials = []
        for cue in found:
            if cue.category != NEGATED or not (first <= cue.start and cue.end <= last):
                continue
            span = doc.char_span(cue.start, cue.end, alignment_mode="expand")
            if span is not None and not semantic.is_inability(doc, span.start, span.end):
                denials.append(cue)
        return tuple(denials)

    def _clause_cues(self, doc: Doc, found: list[Clause]) -> list[tuple[Cue, ...]]:
        """The cues that modify each clause: a cue counts when it modifies at least half of the clause's
        content words (not stop words, not cue words). ConText is asked word by word, with the clause's own
        cue words allowed to modify the rest: "no" modifies "trouble getting my words out", but "friend"
        does not make "my friend says I look yellow" about someone else."""
        tokens = [(i, i + 1) for clause in found for i in range(clause.start, clause.end)]
        per_token = iter(self._context.cues(doc, tokens, within=True))
        result: list[tuple[Cue, ...]] = []
        for clause in found:
            cues_at = {i: next(per_token) for i in range(clause.start, clause.end)}
            every = {cue for cues in cues_at.values() for cue in cues}
            in_cues = {t.i for cue in every for t in doc.char_span(cue.start, cue.end, alignment_mode="expand") or ()}
            content = [i for i in cues_at if doc[i].is_alpha and i not in in_cues and doc[i].lower_ not in self._stop]
            content = content or [i for i in cues_at if doc[i].is_alpha and i not in in_cues] or list(cues_at)
            kept = [cue for cue in every if 2 * sum(cue in cues_at[i] for i in content) >= len(content)]
            result.append(tuple(sorted(kept, key=lambda cue: (cue.start, cue.end, cue.category))))
        return result

    def _resemblance_finding(
        self, doc: Doc, piece: str, offset: int, clause: Clause, nearest: Nearest, cues: tuple[Cue, ...]
    ) -> Finding:
        """A semantic match as a finding. A negation inside the clause that is part of the complaint
        itself ("no energy", "can't sleep") is not a denial (see `semantic`)."""
        kept = []
        for cue in cues:
            inside = clause.start_char <= cue.start and cue.end <= clause.end_char
            span = doc.char_span(cue.start, cue.end, alignment_mode="expand") if inside else None
            if (
                cue.category == NEGATED
                and span is not None
                and semantic.negation_is_the_complaint(doc, span.start, span.end, nearest)
            ):
                continue
            kept.append(cue)
        return Finding(
            entry=self.catalogue.entries[nearest.label],
            phrase=nearest.phrase,
            severe_phrase=nearest.severe,
            span=piece[clause.start_char : clause.end_char],
            start=offset + clause.start_char,
            end=offset + clause.end_char,
            cues=tuple(kept),
            corrections=(),
            resemblance=Resemblance(
                nearest.phrase,
                nearest.score,
                self._semantic_settings.threshold,
                self._semantic_settings.emergency_threshold,
            ),
        )

    def _readable(self, plain: Normalised, docs: list[Doc]) -> bool:
        if self.language == spanish.SPANISH:
            return True  # identified as Spanish, which this triager reads
        """The language check sees the letters as written (accents and other scripts kept): folding them
        for matching must not make French or Russian look like English."""
        if plain.text == plain.original:
            return self._language_check.readable(plain.text, docs)
        written = written_form(plain.original)
        written_docs = [self._read(piece) for _, piece in chunks(sanitize(written), CHUNK_CHARS)]
        return self._language_check.readable(written, written_docs)

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


def _within_line(
    plain: Normalised, offset: int, doc: Doc, first: int, last: int, cues: tuple[Cue, ...]
) -> tuple[Cue, ...]:
    """Drops denials, resolutions and hypotheticals that reach tokens `first:last` across a line break: a
    list typed on separate lines ("no fever" / "headache") is separate statements."""
    start = offset + doc[first].idx
    end = offset + doc[last - 1].idx + len(doc[last - 1])
    kept = []
    for cue in cues:
        cue_start, cue_end = offset + cue.start, offset + cue.end
        if cue.category in EXCLUDING and (
            plain.crosses_break(cue_end, start) if cue_end <= start else plain.crosses_break(end, cue_start)
        ):
            continue
        kept.append(cue)
    return tuple(kept)


#: "this rash", "my headache": a symptom pointed at is one the patient has, whatever question follows.
_POINTING = frozenset({"this", "these", "that", "those", "my", "his", "their", "our"})  # not "her": "give her"


def _pointed_at(doc: Doc, match: Match, cues: tuple[Cue, ...]) -> tuple[Cue, ...]:
    """Drops question cues from a symptom the patient points at ("is this rash a common side effect?")."""
    before = doc[match.start - 1].lower_ if match.start > 0 else ""
    if before not in _POINTING:
        return cues
    return tuple(cue for cue in cues if cue.category != QUESTION)


def _topic_words(doc: Doc, topics: dict[str, str], symptoms: list[Match]) -> list[Match]:
    """Words of the complaint net (label -1) in sentences where no catalogue phrase was found: a
    sentence with a symptom, counted or set aside, is explained by it ("his lips aren't swollen")."""
    hits = [token.i for token in doc if token.lower_ in topics]
    if not hits:
        return []
    if symptoms:
        starts = doc.to_array("SENT_START").tolist()
        sentence = list(itertools.accumulate(1 if start == 1 else 0 for start in starts))
        explained = {sentence[m.start] for m in symptoms}
        hits = [i for i in hits if sentence[i] not in explained]
    return [Match(Phrase(-1, doc[i].lower_, False, ()), i, i + 1, frozenset({i})) for i in hits]


def _not_within(complaints: list[Match], symptoms: list[Match]) -> list[Match]:
    """Complaint words that are part of a symptom's phrase are that symptom's ("my tummy doesn't hurt")."""
    return [c for c in complaints if not any(s.start <= c.start and c.end <= s.end for s in symptoms)]


def _outside(symptoms: list[Match], others: list[Match]) -> list[Match]:
    """The symptom matches that share no word with a phrase that only looks like a symptom."""
    if not others:
        return symptoms
    taken = frozenset().union(*(other.tokens for other in others))
    return [match for match in symptoms if not match.tokens & taken]


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
