"""Scores a system's answers against vignettes, with the shared scorer's definitions
(`../shared/eval/score.py`):

- under-triage: the level given is below every acceptable level; over-triage: above every one;
- term recall: the share of expected terms (each a group of acceptable alternatives) found;
- term precision: found terms that were expected, over all terms found (an alternative counts once);
- the confusion matrix: rows are the most urgent acceptable level, columns the level given;
- per-syndrome recall: each expected term counts for every syndrome the catalogue gives any of its
  alternatives; terms with none count under `NO_SYNDROME`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.triage.result import Level
from tools.evaluation.cases import Case

#: Levels in the order the report shows them, most urgent first.
LEVELS = tuple(sorted(Level, key=lambda level: -level.rank))
NO_SYNDROME = "(none listed)"
UNDER, OVER, OK = "under", "over", "ok"


@dataclass(frozen=True)
class Prediction:
    """A system's answer to one message: its level and the catalogue terms it found (or raw entity
    values a baseline could not resolve to a term)."""

    level: Level
    terms: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    """How one answer compares with its vignette."""

    triage: str
    found: tuple[tuple[str, ...], ...]
    missing: tuple[tuple[str, ...], ...]
    extra: tuple[str, ...]


@dataclass(frozen=True)
class SyndromeRecall:
    found: int
    expected: int

    @property
    def recall(self) -> float:
        return self.found / self.expected if self.expected else 1.0


@dataclass(frozen=True)
class Score:
    n: int
    under: int
    over: int
    exact: int
    found: int
    missing: int
    extra: int
    confusion: Mapping[tuple[Level, Level], int] = field(default_factory=dict)
    syndromes: Mapping[str, SyndromeRecall] = field(default_factory=dict)
    #: Messages whose only acceptable level is `none` (greetings, questions, other people, denials) ...
    symptom_free: int = 0
    #: ... answered with anything else: each would reach the care team's queue or alarm the patient.
    false_alarms: int = 0

    @property
    def accuracy(self) -> float:
        return self.exact / self.n if self.n else 1.0

    @property
    def recall(self) -> float:
        expected = self.found + self.missing
        return self.found / expected if expected else 1.0

    @property
    def precision(self) -> float:
        given = self.found + self.extra
        return self.found / given if given else 1.0


def judge(case: Case, prediction: Prediction) -> Verdict:
    ranks = [level.rank for level in case.levels]
    given = prediction.level.rank
    triage = UNDER if given < min(ranks) else OVER if given > max(ranks) else OK
    found = tuple(group for group in case.terms if set(group) & prediction.terms)
    missing = tuple(group for group in case.terms if not set(group) & prediction.terms)
    allowed = {term for group in case.terms for term in group}
    extra = tuple(sorted(term for term in prediction.terms if term not in allowed))
    return Verdict(triage, found, missing, extra)


def score(cases: Sequence[Case], predictions: Sequence[Prediction], syndromes: Mapping[str, Sequence[str]]) -> Score:
    """Scores `predictions[i]` against `cases[i]`; `syndromes` maps a catalogue term to its syndromes."""
    if len(cases) != len(predictions):
        raise ValueError(f"{len(predictions)} answers for {len(cases)} cases")
    triage: Counter[str] = Counter()
    confusion: Counter[tuple[Level, Level]] = Counter()
    per_syndrome_found: Counter[str] = Counter()
    per_syndrome_expected: Counter[str] = Counter()
    found = missing = extra = 0
    symptom_free = false_alarms = 0
    for case, prediction in zip(cases, predictions, strict=True):
        verdict = judge(case, prediction)
        if set(case.levels) == {Level.NONE}:
            symptom_free += 1
            false_alarms += prediction.level != Level.NONE
        triage[verdict.triage] += 1
        confusion[(case.expected, prediction.level)] += 1
        found, missing, extra = found + len(verdict.found), missing + len(verdict.missing), extra + len(verdict.extra)
        for group in case.terms:
            names = {name for term in group for name in syndromes.get(term, ())} or {NO_SYNDROME}
            hit = group in verdict.found
            for name in names:
                per_syndrome_expected[name] += 1
                per_syndrome_found[name] += hit
    return Score(
        n=len(cases),
        under=triage[UNDER],
        over=triage[OVER],
        exact=triage[OK],
        found=found,
        missing=missing,
        extra=extra,
        confusion=dict(confusion),
        syndromes={
            name: SyndromeRecall(per_syndrome_found[name], expected) for name, expected in per_syndrome_expected.items()
        },
        symptom_free=symptom_free,
        false_alarms=false_alarms,
    )


def subset(
    cases: Sequence[Case], predictions: Sequence[Prediction], tag: str, *, carrying: bool = True
) -> tuple[list[Case], list[Prediction]]:
    """The cases carrying `tag` (or, with `carrying=False`, those without it), with their answers."""
    pairs = [(c, p) for c, p in zip(cases, predictions, strict=True) if (tag in c.tags) == carrying]
    return [case for case, _ in pairs], [prediction for _, prediction in pairs]
