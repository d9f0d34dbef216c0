"""The triage policy (DESIGN.md): each found symptom gets its level and a reason, and the message gets
the worst level. Precautions win (encoded in the catalogue's levels), worst wins, severity escalates,
denied / resolved / hypothetical symptoms do not count, and a message that reads like a complaint but
matched nothing, or that could not be read, is `unclear` rather than `none`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.triage.catalogue import Catalogue, Entry
from bot.triage.context import ASKING, EXCLUDING, NOT_A_COMPLAINT, SEVERE, WELL, Cue
from bot.triage.result import Level, Symptom, Temperature, Triage, worst
from bot.triage.spelling import Correction

UNREADABLE = "unreadable"
UNMATCHED_COMPLAINT = "unmatched_complaint"
NOT_A_COMPLAINT_LABELS = {WELL: "said to be well", ASKING: "asked about"}


@dataclass(frozen=True)
class Resemblance:
    """Why a clause was read as a catalogue term by meaning: the nearest phrase, how near, the threshold."""

    phrase: str
    score: float
    threshold: float
    #: Below this, a match by meaning to an emergency term is call-now, not emergency.
    emergency_threshold: float


@dataclass(frozen=True)
class Finding:
    """A catalogue phrase found in the text, before the policy is applied."""

    entry: Entry
    phrase: str
    severe_phrase: bool
    span: str
    start: int
    end: int
    cues: tuple[Cue, ...]
    corrections: tuple[Correction, ...]
    #: Set when the semantic matcher, not the lexicon, found it.
    resemblance: Resemblance | None = None


@dataclass(frozen=True)
class Complaint:
    """Words that make a message read like a symptom report ("it hurts", "I feel off"), or, when `topic`
    is set, a word about the body, feelings, sleep, eating, the toilet, energy, pain, looks or behaviour
    (the complaint net: such a message that matches no term is `unclear`, never `none`)."""

    span: str
    cues: tuple[Cue, ...]
    topic: str = ""


class Policy:
    """Applies DESIGN.md's rules to what the matcher, context and thermometer found."""

    def __init__(self, catalogue: Catalogue, temperature_terms: frozenset[str]) -> None:
        self._catalogue = catalogue
        self._temperature_terms = temperature_terms

    def decide(
        self,
        findings: list[Finding],
        complaints: list[Complaint],
        temperature: Temperature | None,
        readable: Callable[[], bool],
    ) -> Triage:
        """`readable` is asked only when no symptom counts: whether the text is English the catalogue
        could have matched."""
        judged = [self._symptom(finding) for finding in findings]
        if temperature is not None:
            judged = self._with_temperature(judged, temperature)
        counted = _first_per_term([s for s in judged if not s.negated])
        counted_terms = {s.term for s in counted}
        excluded = _first_per_term([s for s in judged if s.negated and s.term not in counted_terms])
        actions = self._catalogue.actions
        if counted:
            level = worst([s.level for s in counted])
            top = [s.term for s in counted if s.level == level]
            reason = f"{actions[level]} Because of: {'; '.join(top)}."
            return Triage(level, reason, tuple(counted), tuple(excluded), temperature)
        complaint = next((c for c in complaints if not _excluded_by(c.cues) and not _set_aside(c)), None)
        if not readable():
            reason = f"{actions[Level.UNCLEAR]} (The message could not be read as English.)"
            return Triage(Level.UNCLEAR, reason, (), tuple(excluded), temperature, UNREADABLE)
        if complaint is not None:
            reason = (
                f"{actions[Level.UNCLEAR]} ('{complaint.span}' sounds like a symptom, "
                "but it matches no side effect in the medicine guide.)"
            )
            return Triage(Level.UNCLEAR, reason, (), tuple(excluded), temperature, UNMATCHED_COMPLAINT)
        reason = actions[Level.NONE]
        if excluded:
            reason += " Set aside: " + "; ".join(f"{s.term} ({', '.join(s.context)})" for s in excluded) + "."
        if temperature is not None:
            reason += f" {temperature.advice}"
        return Triage(Level.NONE, reason, (), tuple(excluded), temperature)

    def _symptom(self, finding: Finding) -> Symptom:
        entry = finding.entry
        severe_cues = [cue.text for cue in finding.cues if cue.category == SEVERE]
        excluding = dict(EXCLUDING)
        if finding.resemblance is not None:  # a guess by meaning yields to "slept well" or a question
            excluding.update(NOT_A_COMPLAINT_LABELS)
        excluded = [excluding[cue.category] for cue in finding.cues if cue.category in excluding]
        severe = finding.severe_phrase or bool(severe_cues)
        level = entry.severe_level if severe else entry.level
        capped = ""
        near = finding.resemblance
        if near is not None and level == Level.EMERGENCY and near.score < near.emergency_threshold:
            level = Level.CALL_NOW
            capped = (
                f"; matched by meaning at {near.score:.2f}, below the {near.emergency_threshold:.2f} an emergency "
                "needs, so call right away and a person checks it"
            )
        if finding.resemblance is not None:
            near = finding.resemblance
            method, score = "semantic", near.score
            matched = (
                f"'{finding.span}' is close in meaning to '{near.phrase}', a phrase for '{entry.term}' "
                f"(similarity {near.score:.2f}; matches need {near.threshold:.2f})"
            )
        elif finding.corrections:
            method = "fuzzy"
            score = min(correction.score for correction in finding.corrections)
            read_as = ", ".join(f"'{c.original}' read as '{c.corrected}'" for c in finding.corrections)
            matched = f"'{finding.span}' matched '{entry.term}' ({read_as})"
        else:
            method, score = "lemma", 1.0
            matched = f"'{finding.span}' matched '{entry.term}'"
        if excluded:
            cue_words = ", ".join(f"'{cue.text}'" for cue in finding.cues if cue.category in excluding)
            why = f"not counted: {', '.join(excluded)} by {cue_words}"
        else:
            why = self._why(entry, level, severe, finding.severe_phrase, severe_cues) + capped
        reason = f"{matched}: {why}. {entry.explanation}"
        context = tuple(excluded) + (("severe",) if severe else ())
        return Symptom(
            term=entry.term,
            level=level,
            syndromes=entry.syndromes,
            span=finding.span,
            start=finding.start,
            end=finding.end,
            method=method,
            score=score,
            negated=bool(excluded),
            reason=reason,
            context=context,
        )

    def _why(self, entry: Entry, level: Level, severe: bool, severe_phrase: bool, severe_cues: list[str]) -> str:
        if severe and level != entry.level:
            said = "the words themselves" if severe_phrase else ", ".join(f"'{cue}'" for cue in severe_cues)
            because = f"described as severe ({said})"
            if level == Level.EMERGENCY:
                return f"{because}; {self._catalogue.level_why[Level.EMERGENCY]}"
            return f"{because}; a side effect that is severe, getting worse or constant needs a call right away"
        if level == Level.EMERGENCY:
            return self._catalogue.level_why[Level.EMERGENCY]
        floor = max((section.floor for section in entry.sections), key=lambda lvl: lvl.rank)
        if level.rank > floor.rank and entry.syndromes:
            names = " and ".join(self._catalogue.syndromes[s] for s in entry.syndromes)
            wording = f" (as '{entry.also_named[0]}')" if entry.also_named else ""
            return (
                f"the monograph's Precautions name it{wording} as a sign of {names}, to report right away; "
                "Precautions win over the list of side effects that usually need no attention"
            )
        section = next((s for s in entry.sections if s.floor == floor), entry.sections[0])
        return section.why

    def _with_temperature(self, judged: list[Symptom], temperature: Temperature) -> list[Symptom]:
        """A measured temperature decides the temperature terms: the number adds its term, and below
        fever the same words without a number ("temp", "feverish") no longer count."""
        if not temperature.term:
            below = f"measured {temperature.celsius:.1f} °C, below fever"
            return [
                replace(s, negated=True, context=(*s.context, below), reason=f"{s.reason} Not counted: {below}.")
                if s.term in self._temperature_terms and not s.negated
                else s
                for s in judged
            ]
        entry = self._catalogue.entry(temperature.term)
        reason = (
            f"'{temperature.span}' is {temperature.celsius:.1f} °C. {temperature.advice} "
            f"The term is '{entry.term}': {self._why(entry, entry.level, False, False, [])}. {entry.explanation}"
        )
        from_number = Symptom(
            term=entry.term,
            level=entry.level,
            syndromes=entry.syndromes,
            span=temperature.span,
            start=temperature.start,
            end=temperature.end,
            method="temperature",
            score=1.0,
            negated=False,
            reason=reason,
        )
        return [from_number, *judged]


def _set_aside(complaint: Complaint) -> bool:
    """An everyday word said of something going well, or in a question, is not a complaint."""
    return bool(complaint.topic) and any(cue.category in NOT_A_COMPLAINT for cue in complaint.cues)


def _excluded_by(cues: tuple[Cue, ...]) -> bool:
    return any(cue.category in EXCLUDING for cue in cues)


def _first_per_term(symptoms: list[Symptom]) -> list[Symptom]:
    """One symptom per term: its most urgent occurrence, in order of first appearance."""
    best: dict[str, Symptom] = {}
    for symptom in symptoms:
        current = best.get(symptom.term)
        if current is None or symptom.level.rank > current.level.rank:
            best[symptom.term] = symptom
    order = {term: index for index, term in enumerate(dict.fromkeys(s.term for s in symptoms))}
    return sorted(best.values(), key=lambda s: order[s.term])
