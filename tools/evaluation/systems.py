"""The systems under evaluation, each answering a list of messages with `Prediction`s:

- `TriageCore`: the project's triage core (`bot.triage`), in process, as it runs or as the lexicon alone;
- `RasaNLU`: the project's trained Rasa model; level and terms from what the SymptomExtractor puts on
  the parse (the `triage` object and the `symptom` entities);
- `FuzzyBaseline`: rapidfuzz's `extractOne` over the catalogue's terms;
- `DietBaseline`: a Rasa model with DIET's own entity extraction (see `diet`).

A baseline's level is the catalogue level of the terms it found, worst wins, and `none` when it found
nothing. Rasa is imported only when a Rasa system is built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rapidfuzz import fuzz, process, utils

from bot.triage import Triager, default_triager
from bot.triage.catalogue import Catalogue
from bot.triage.result import Level, worst
from tools.evaluation.metrics import Prediction

#: extractOne's default scorer and a common cutoff, chosen on the development set only (never on the test
#: set): there, 80 under-triages 9 of 40 messages and 90 under-triages 24; other scorers did no better.
#: rapidfuzz 3 applies no processor by default, so the message is lower-cased and stripped explicitly.
FUZZY_SCORER = fuzz.WRatio
FUZZY_CUTOFF = 80.0
SYMPTOM_ENTITY = "symptom"


class System(Protocol):
    name: str

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


class TriageCore:
    """The core as it runs (lexicon, then the semantic matcher), or with `semantic=False` the lexicon alone."""

    def __init__(self, semantic: bool = True) -> None:
        self.name = "triage core" if semantic else "lexicon alone"
        self._semantic = semantic

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        triager = default_triager() if self._semantic else Triager(semantic_matching=False)
        predictions = []
        for text in texts:
            triage = triager.triage(text)
            predictions.append(Prediction(triage.level, frozenset(symptom.term for symptom in triage.symptoms)))
        return predictions


class CatalogueLevels:
    """A baseline's level for the terms it found: the catalogue's level of each, worst wins. A value that
    is not a catalogue term (an entity span DIET found but could not name) makes the message `unclear`."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._levels = {entry.term: entry.level for entry in catalogue.entries}

    def __call__(self, terms: frozenset[str]) -> Level:
        return worst([self._levels.get(term, Level.UNCLEAR) for term in terms])


class FuzzyBaseline:
    name = "rapidfuzz extractOne"

    def __init__(self, catalogue: Catalogue) -> None:
        self._terms = [entry.term for entry in catalogue.entries]
        self._level = CatalogueLevels(catalogue)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        predictions = []
        for text in texts:
            best = process.extractOne(
                text, self._terms, scorer=FUZZY_SCORER, score_cutoff=FUZZY_CUTOFF, processor=utils.default_process
            )
            terms = frozenset([best[0]]) if best else frozenset()
            predictions.append(Prediction(self._level(terms), terms))
        return predictions


class RasaParser:
    """A trained Rasa model loaded in process, parsing messages as the Rasa server's NLU would."""

    def __init__(self, model: Path) -> None:
        from rasa.core.agent import Agent

        self._agent = Agent.load(str(model))

    def parse(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        async def parse_all() -> list[dict[str, Any]]:
            return [await self._agent.parse_message(text) for text in texts]

        return asyncio.run(parse_all())


def symptom_values(parse: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        str(entity["value"]) for entity in parse.get("entities", []) if entity.get("entity") == SYMPTOM_ENTITY
    )


class RasaNLU:
    name = "Rasa NLU (ours)"

    def __init__(self, model: Path) -> None:
        self._parser = RasaParser(model)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        predictions = []
        for parse in self._parser.parse(texts):
            triage = parse.get("triage") or {}
            level = Level.parse(str(triage.get("level", Level.UNCLEAR.value)))
            predictions.append(Prediction(level, symptom_values(parse)))
        return predictions


class DietBaseline:
    name = "Rasa DIET entities"

    def __init__(self, model: Path, catalogue: Catalogue) -> None:
        self._parser = RasaParser(model)
        self._level = CatalogueLevels(catalogue)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        predictions = []
        for parse in self._parser.parse(texts):
            terms = symptom_values(parse)
            predictions.append(Prediction(self._level(terms), terms))
        return predictions
