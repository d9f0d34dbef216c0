"""The evaluation report: Markdown (`build/eval/report.md`) and one confusion-matrix PNG per vignette set
(`build/eval/confusion-<set>.png`, one panel per system), and the summary printed on the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.evaluation.cases import Case
from tools.evaluation.metrics import LEVELS, NO_SYNDROME, OK, Prediction, Score, judge, score, subset

HELDOUT = "heldout"
#: Tags shown in the breakdown by kind of message, in this order (others follow alphabetically).
TAG_ORDER = ("heldout", "multi", "negated", "resolved", "hypothetical", "misspelled", "british", "caregiver",
             "severe", "emergency", "temperature", "unclear", "language", "question", "greeting")  # fmt: skip


@dataclass(frozen=True)
class SetResult:
    """One vignette set answered by every system (the first system is ours, the one compared)."""

    name: str
    path: str
    cases: Sequence[Case]
    predictions: dict[str, list[Prediction]]
    scores: dict[str, Score]
    syndromes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def summary_table(results: Sequence[SetResult]) -> str:
    lines = [
        "| set | system | n | under-triage | over-triage | level exact | term recall | term precision "
        "| false alarms (symptom-free) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for result in results:
        for system, s in result.scores.items():
            lines.append(
                f"| {result.name} | {system} | {s.n} | {s.under} | {s.over} | {s.exact} ({s.accuracy:.0%}) "
                f"| {s.recall:.1%} | {s.precision:.1%} | {s.false_alarms} of {s.symptom_free} |"
            )
    return "\n".join(lines)


def comparison(result: SetResult, ours: str, baselines: Sequence[str]) -> list[str]:
    """Sentences saying by how much `ours` beats (or trails) each baseline on one set."""
    mine = result.scores[ours]
    sentences = []
    for name in baselines:
        other = result.scores[name]
        sentences.append(
            f"- {result.name}, against {name}: under-triage {mine.under} vs {other.under} "
            f"({_diff(other.under - mine.under, 'fewer', 'more')}, of {mine.n}); "
            f"term recall {mine.recall:.1%} vs {other.recall:.1%} ({_points(mine.recall - other.recall)}); "
            f"term precision {mine.precision:.1%} vs {other.precision:.1%} "
            f"({_points(mine.precision - other.precision)}); "
            f"level exact {mine.exact} vs {other.exact} ({_points(mine.accuracy - other.accuracy)}); "
            f"over-triage {mine.over} vs {other.over}."
        )
    return sentences


def _diff(value: int, better: str, worse: str) -> str:
    return f"{value} {better}" if value >= 0 else f"{-value} {worse}"


def _points(value: float) -> str:
    return f"{value * 100:+.1f} points"


def confusion_table(s: Score) -> str:
    header = "| expected \\ given | " + " | ".join(level.value for level in LEVELS) + " |"
    lines = [header, "|---|" + "--:|" * len(LEVELS)]
    for expected in LEVELS:
        cells = [str(s.confusion.get((expected, given), 0)) for given in LEVELS]
        lines.append(f"| **{expected.value}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def syndrome_table(result: SetResult) -> str:
    systems = list(result.scores)
    names = sorted({name for s in result.scores.values() for name in s.syndromes}, key=lambda n: (n == NO_SYNDROME, n))
    lines = ["| syndrome | expected terms | " + " | ".join(systems) + " |", "|---|--:|" + "--:|" * len(systems)]
    for name in names:
        expected = next(s.syndromes[name].expected for s in result.scores.values() if name in s.syndromes)
        cells = [f"{result.scores[system].syndromes[name].recall:.0%}" for system in systems]
        lines.append(f"| {name} | {expected} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tag_table(result: SetResult) -> str:
    """Per kind of message: under-triage, level exact and term recall of each system."""
    systems = list(result.scores)
    tags = {tag for case in result.cases for tag in case.tags}
    ordered = [tag for tag in TAG_ORDER if tag in tags] + sorted(tags - set(TAG_ORDER))
    lines = [
        "| kind | n | " + " | ".join(systems) + " |",
        "|---|--:|" + "---|" * len(systems),
    ]
    rows = [(tag, tag, True) for tag in ordered]
    if HELDOUT in tags:
        rows.append((f"all but {HELDOUT}", HELDOUT, False))
    for label, tag, carrying in rows:
        cells = []
        n = 0
        for system in systems:
            cases, predictions = subset(result.cases, result.predictions[system], tag, carrying=carrying)
            s = score(cases, predictions, result.syndromes)
            n = s.n
            cells.append(f"under {s.under}, exact {s.exact}, recall {s.recall:.0%}")
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def misses(result: SetResult, system: str) -> str:
    """Every message the system triaged wrongly or whose terms it missed or added."""
    lines = []
    for case, prediction in zip(result.cases, result.predictions[system], strict=True):
        verdict = judge(case, prediction)
        if verdict.triage == OK and not verdict.missing and not verdict.extra:
            continue
        want = "/".join(level.value for level in case.levels)
        parts = [f"{verdict.triage.upper()}" if verdict.triage != OK else "level ok", f"gave {prediction.level.value}"]
        parts.append(f"want {want}")
        if verdict.missing:
            parts.append("missed " + "; ".join(" or ".join(group) for group in verdict.missing))
        if verdict.extra:
            parts.append("added " + "; ".join(verdict.extra))
        lines.append(f"- {case.text!r}: " + ", ".join(parts))
    return "\n".join(lines) if lines else "(none)"


def confusion_png(result: SetResult, path: Path) -> None:
    """One panel per system: rows are the most urgent acceptable level, columns the level given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(result.scores)
    labels = [level.value for level in LEVELS]
    figure, axes = plt.subplots(1, len(systems), figsize=(4.2 * len(systems), 4.4), squeeze=False)
    for axis, system in zip(axes[0], systems, strict=True):
        s = result.scores[system]
        counts = [[s.confusion.get((expected, given), 0) for given in LEVELS] for expected in LEVELS]
        axis.imshow(counts, cmap="Blues")
        for row, values in enumerate(counts):
            for column, value in enumerate(values):
                if value:
                    colour = "white" if value > max(map(max, counts)) / 2 else "black"
                    axis.text(column, row, str(value), ha="center", va="center", color=colour, fontsize=9)
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("level given")
        axis.set_ylabel("expected (most urgent acceptable)")
        axis.set_title(f"{system}\nunder {s.under}, over {s.over}, exact {s.exact}/{s.n}", fontsize=9)
    figure.suptitle(f"Per-level confusion, {result.name} set ({len(result.cases)} messages)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def markdown(results: Sequence[SetResult], ours: str, baselines: Sequence[str], notes: Sequence[str]) -> str:
    out = ["# Evaluation of the triage", "", *[f"- {note}" for note in notes], ""]
    out += ["## Summary", "", summary_table(results), ""]
    out += [f"## {ours} against the baselines", ""]
    for result in results:
        out += comparison(result, ours, baselines)
    for result in results:
        out += ["", f"## {result.name.capitalize()} set ({result.path})", ""]
        out += [f"![confusion matrices](confusion-{result.name}.png)", ""]
        for system in result.scores:
            out += [f"### Per-level confusion: {system}", "", confusion_table(result.scores[system]), ""]
        out += ["### Per-syndrome recall", "", syndrome_table(result), ""]
        if any(case.tags for case in result.cases):
            out += ["### By kind of message", "", tag_table(result), ""]
        out += [f"### Where {ours} went wrong", "", misses(result, ours), ""]
    return "\n".join(out)
