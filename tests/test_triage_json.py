"""The triage object's JSON form read back (`Triage.from_dict`): the action server answers from the triage
the NLU put on the message, so reading it back must give the triage the core made, and a dict the core
could not have written must be refused, naming the field and never the patient's words."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from bot.triage import Symptom, Triage, Triager
from bot.triage.result import MalformedTriage
from tests.conftest import ROOT

#: Patient messages of every kind the sets hold: the development vignettes beside this checkout, and the
#: project's own sets, English and Spanish.
SETS = [ROOT.parent / "shared" / "eval" / "dev_vignettes.jsonl", *sorted((ROOT / "eval").glob("*_set.jsonl"))]


def texts() -> list[str]:
    found = [
        json.loads(line)["text"]
        for path in SETS
        if path.is_file()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return list(dict.fromkeys(found))


def as_written(triage: Triage) -> Triage:
    """The triage with the two figures its JSON form rounds for people to read, rounded the same way."""

    def symptom(item: Symptom) -> Symptom:
        return dataclasses.replace(item, score=round(item.score, 3))

    temperature = triage.temperature
    return dataclasses.replace(
        triage,
        symptoms=tuple(map(symptom, triage.symptoms)),
        excluded=tuple(map(symptom, triage.excluded)),
        temperature=temperature and dataclasses.replace(temperature, celsius=round(temperature.celsius, 1)),
    )


@pytest.fixture(scope="module")
def triages(triager: Triager) -> list[Triage]:
    found = [triager.triage(text) for text in texts()]
    assert len(found) > 500, "the evaluation sets are missing"
    return found


def test_every_triage_of_the_sets_reads_back_as_it_was_written(triages: list[Triage]) -> None:
    spanish = [t for t in triages if t.language == "es"]
    assert len(spanish) > 50 and any(t.temperature for t in triages) and any(t.excluded for t in triages)
    for triage in triages:
        written = json.loads(json.dumps(triage.to_dict()))  # as it travels: JSON to Rasa, the store, the actions
        read = Triage.from_dict(written)
        assert read == as_written(triage)
        assert read.to_dict() == written  # and it writes the same JSON again


def test_a_triage_without_rounded_figures_reads_back_equal(triages: list[Triage]) -> None:
    exact = [t for t in triages if as_written(t) == t]
    assert len(exact) > 0.8 * len(triages)
    for triage in exact:
        assert Triage.from_dict(triage.to_dict()) == triage


def _corrupt(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(data)
    where: Any = broken
    for step in path[:-1]:
        where = where[step]
    if value is _DELETE:
        del where[path[-1]]
    else:
        where[path[-1]] = value
    return broken


_DELETE = object()
#: Words of the patient's that must never reach the log through an error message.
SECRET = "Zebulon-Quux"


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("level",), "urgent", "triage.level: expected one of"),
        (("level",), None, "triage.level"),
        (("reason",), 3, "triage.reason: expected a string, got int"),
        (("symptoms",), {"term": "fever"}, "triage.symptoms: expected a list of symptoms, got dict"),
        (("symptoms", 0, "level"), "CALL_NOW", "triage.symptoms[0].level"),
        (("symptoms", 0, "start"), True, "triage.symptoms[0].start: expected an integer, got bool"),
        (("symptoms", 0, "start"), 2.0, "triage.symptoms[0].start: expected an integer, got float"),
        (("symptoms", 0, "score"), "0.9", "triage.symptoms[0].score: expected a finite number, got str"),
        (("symptoms", 0, "score"), float("nan"), "triage.symptoms[0].score: expected a finite number"),
        (("symptoms", 0, "negated"), "false", "triage.symptoms[0].negated: expected true or false, got str"),
        (("symptoms", 0, "context"), "severe", "triage.symptoms[0].context: expected a list of strings, got str"),
        (("symptoms", 0, "syndromes"), [SECRET, 1], "triage.symptoms[0].syndromes: expected a list of strings"),
        (("symptoms", 0, "span"), _DELETE, "triage.symptoms[0]: ['span'] missing"),
        (("symptoms", 0, SECRET), SECRET, "triage.symptoms[0]: [] missing, 1 unknown"),
        (("symptoms", 0), SECRET, "triage.symptoms[0]: expected an object, got str"),
        (("excluded",), None, "triage.excluded: expected a list of symptoms, got NoneType"),
        (("temperature", "celsius"), None, "triage.temperature.celsius: expected a finite number"),
        (("temperature", "term"), 5, "triage.temperature.term: expected a string or null, got int"),
        (("temperature",), [38.5], "triage.temperature: expected an object, got list"),
        (("unclear_because",), False, "triage.unclear_because: expected a string or null, got bool"),
        (("language",), None, "triage.language: expected a string, got NoneType"),
        ((SECRET,), 1, "triage: [] missing, 1 unknown"),
    ],
)
def test_a_dict_the_core_could_not_have_written_is_refused_by_field(
    triager: Triager, path: tuple[Any, ...], value: Any, named: str
) -> None:
    data = triager.triage(f"{SECRET} has a fever of 39.2 and a headache, no rash").to_dict()
    assert data["symptoms"] and data["temperature"], "the message must give every part a value"
    with pytest.raises(MalformedTriage) as refused:
        Triage.from_dict(_corrupt(data, path, value))
    assert named in str(refused.value)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("data", [None, [], "call_now", 1])
def test_anything_but_an_object_is_refused(data: Any) -> None:
    with pytest.raises(MalformedTriage, match="triage: expected an object"):
        Triage.from_dict(data)
