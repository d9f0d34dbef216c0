"""The side-effect catalogue: one entry per monograph bullet or Precautions sign, loaded from `knowledge/`.

Loading checks every row against the policy's vocabulary (levels, sections, syndromes, word groups) and
fails with a message naming the file, row and column. Nothing here knows any particular symptom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bot.triage.knowledge import KnowledgeError, Row, knowledge_dir, read_table
from bot.triage.result import SYMPTOM_LEVELS, Level

GAP = "..."
_GROUP = re.compile(r"\{([a-z_]+)\}")
_LEVEL_NAMES = [level.value for level in SYMPTOM_LEVELS]


@dataclass(frozen=True)
class Section:
    """A monograph list or Precautions warning, with the least urgent level a sign in it may have."""

    name: str
    floor: Level
    why: str


@dataclass(frozen=True)
class Entry:
    """One catalogue term and everything the triage needs to know about it."""

    term: str
    sections: tuple[Section, ...]
    level: Level
    severe_level: Level
    syndromes: tuple[str, ...]
    also_named: tuple[str, ...]
    synonyms: tuple[str, ...]
    severe_synonyms: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class Catalogue:
    """The loaded knowledge: entries, word groups, sections, syndrome names and what each level means."""

    entries: tuple[Entry, ...]
    groups: dict[str, tuple[str, ...]]
    syndromes: dict[str, str]
    actions: dict[Level, str]
    level_why: dict[Level, str]
    directory: Path

    def entry(self, term: str) -> Entry:
        for entry in self.entries:
            if entry.term == term:
                return entry
        raise KeyError(term)


def load(directory: Path | None = None) -> Catalogue:
    """Reads and validates the catalogue from `directory` (default: the project's knowledge folder)."""
    folder = directory or knowledge_dir()
    actions, level_why = _load_levels(folder / "levels.csv")
    syndromes = _load_syndromes(folder / "syndromes.csv")
    sections = _load_sections(folder / "sections.csv")
    groups = _load_groups(folder / "word_groups.csv")
    entries = _load_entries(folder / "side_effects.csv", sections, syndromes, groups)
    return Catalogue(entries, groups, syndromes, actions, level_why, folder)


def _load_levels(path: Path) -> tuple[dict[Level, str], dict[Level, str]]:
    """What the patient is told at each level, and why a level is what it is when no section says so."""
    actions, why = {}, {}
    for row in read_table(path, ("level", "action", "why")):
        level = Level(row.choice("level", [level.value for level in Level]))
        actions[level] = row.required("action")
        if row.get("why"):
            why[level] = row.get("why")
    missing = [level.value for level in Level if level not in actions]
    if missing:
        raise KnowledgeError(f"{path}: no action for level(s) {', '.join(missing)}")
    return actions, why


def _load_syndromes(path: Path) -> dict[str, str]:
    return {row.required("syndrome"): row.required("name") for row in read_table(path, ("syndrome", "name"))}


def _load_sections(path: Path) -> dict[str, Section]:
    sections = {}
    for row in read_table(path, ("section", "floor", "why")):
        name = row.required("section").lower()
        floor = Level(row.choice("floor", _LEVEL_NAMES))
        sections[name] = Section(name, floor, row.required("why"))
    return sections


def _load_groups(path: Path) -> dict[str, tuple[str, ...]]:
    groups = {}
    for row in read_table(path, ("group", "words")):
        name = row.required("group").lower()
        if not re.fullmatch(r"[a-z_]+", name):
            raise row.error("group", f"is {name!r}; use lower-case letters and underscores")
        words = row.items("words", "|")
        if not words or any(" " in word for word in words):
            raise row.error("words", "must be single words separated by |")
        groups[name] = tuple(word.lower() for word in words)
    return groups


def _load_entries(
    path: Path, sections: dict[str, Section], syndromes: dict[str, str], groups: dict[str, tuple[str, ...]]
) -> tuple[Entry, ...]:
    columns = (
        "term",
        "section",
        "level",
        "severe_level",
        "syndromes",
        "also_named",
        "synonyms",
        "severe_synonyms",
        "explanation",
    )
    entries: list[Entry] = []
    seen: set[str] = set()
    for row in read_table(path, columns):
        term = row.required("term")
        if term != term.lower():
            raise row.error("term", f"is {term!r}; terms are the monograph's words in lower case")
        if term in seen:
            raise row.error("term", f"{term!r} appears twice; one row per term")
        seen.add(term)
        entry_sections = tuple(_section(row, name, sections) for name in row.items("section", ";"))
        if not entry_sections:
            raise row.error("section", f"is empty; allowed: {'; '.join(sections)}")
        level = Level(row.choice("level", _LEVEL_NAMES))
        floor = max((section.floor for section in entry_sections), key=lambda lvl: lvl.rank)
        if level.rank < floor.rank:
            raise row.error("level", f"is {level.value}, below {floor.value} required by its section")
        severe = row.choice("severe_level", _LEVEL_NAMES, optional=True)
        severe_level = Level(severe) if severe else max(level, Level.CALL_NOW, key=lambda lvl: lvl.rank)
        if severe_level.rank < level.rank:
            raise row.error("severe_level", f"is {severe_level.value}, below the row's level {level.value}")
        entry_syndromes = row.items("syndromes", ";")
        for syndrome in entry_syndromes:
            if syndrome not in syndromes:
                raise row.error("syndromes", f"has {syndrome!r}; allowed: {', '.join(syndromes)}")
        synonyms = phrases_of(row, "synonyms", groups)
        if not synonyms:
            raise row.error("synonyms", "is empty; give the words patients use, separated by |")
        entries.append(
            Entry(
                term=term,
                sections=entry_sections,
                level=level,
                severe_level=severe_level,
                syndromes=entry_syndromes,
                also_named=tuple(name.lower() for name in row.items("also_named", ";")),
                synonyms=synonyms,
                severe_synonyms=phrases_of(row, "severe_synonyms", groups),
                explanation=row.required("explanation"),
            )
        )
    if not entries:
        raise KnowledgeError(f"{path}: no catalogue rows")
    return tuple(entries)


def _section(row: Row, name: str, sections: dict[str, Section]) -> Section:
    section = sections.get(name.lower())
    if section is None:
        raise row.error("section", f"has {name!r}; allowed: {'; '.join(sections)}")
    return section


def phrases_of(row: Row, column: str, groups: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The column's `|`-separated phrases, checked for the phrase syntax (see `matcher`)."""
    phrases = []
    for phrase in row.items(column, "|"):
        phrase = " ".join(phrase.lower().split())
        parts = [part.strip() for part in phrase.split(GAP)]
        if any(not part for part in parts):
            raise row.error(column, f"phrase {phrase!r} starts or ends with '{GAP}' or has two in a row")
        for group in _GROUP.findall(phrase):
            if group not in groups:
                raise row.error(
                    column, f"phrase {phrase!r} names unknown group {{{group}}}; known: {', '.join(groups)}"
                )
        phrases.append(phrase)
    return tuple(dict.fromkeys(phrases))
