"""Spanish (knowledge/es, bot/triage/spanish.py): messages recognised as Spanish are triaged against the
same catalogue with Spanish words and Spanish context rules; temperatures with decimal commas."""

from __future__ import annotations

import pytest

from bot.triage.result import Level
from bot.triage.spanish import default_identifier
from bot.triage.triager import Triager


@pytest.mark.parametrize(
    ("text", "language"),
    [("mi hijo tiene calentura", "es"), ("le duele la panza desde ayer", "es"),
     ("tb tiene ronchas x todo el cuerpo", "es"), ("tiene fever y vomitó", "es"), ("my son has a fever", "en"),
     ("he's fitting", "en"), ("woozy", "en")],
)  # fmt: skip
def test_spanish_is_recognised(text: str, language: str) -> None:
    assert default_identifier().language(text) == language


@pytest.mark.parametrize(
    ("text", "level", "term"),
    [
        ("mi hijo está convulsionando", Level.EMERGENCY, "seizures"),
        ("convulsionó hace un rato", Level.EMERGENCY, "seizures"),
        ("tiene calentura desde anoche", Level.CALL_NOW, "fever"),
        ("tiene escalofríos", Level.CALL_NOW, "chills"),
        ("devolvió todo lo que comió", Level.CALL_NOW, "vomiting"),
        ("le salieron ronchas en la espalda", Level.CALL_NOW, "rash"),
        ("tiene moretones en las piernas", Level.CALL_NOW, "unusual bleeding or bruising"),
        ("tiene soltura desde ayer", Level.MENTION, "diarrhea"),
    ],
)
def test_spanish_lay_words_find_the_catalogue_term(triager: Triager, text: str, level: Level, term: str) -> None:
    result = triager.triage(text)
    assert result.language == "es"
    assert term in {s.term for s in result.symptoms}, result.reason
    assert result.level == level, result.reason


def test_the_evidence_is_the_patients_spanish_words(triager: Triager) -> None:
    text = "mi niña tiene calentura"
    [fever] = triager.triage(text).symptoms
    assert text[fever.start : fever.end] == fever.span and "calentura" in fever.span
    assert "calentura" in fever.reason and "'fever'" in fever.reason


@pytest.mark.parametrize(
    "text",
    ["no tiene fiebre", "sin fiebre hoy", "ya no tiene fiebre", "nada de fiebre", "se le quitó la fiebre",
     "la fiebre ya pasó", "si le da fiebre qué hago?", "que hago si vomita"],
)  # fmt: skip
def test_spanish_context_rules(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.NONE, result.reason
    assert result.language == "es"


@pytest.mark.parametrize(
    ("text", "celsius", "level"),
    [("tiene 37,8 de temperatura", 37.8, Level.NONE), ("38,5 grados", 38.5, Level.CALL_NOW),
     ("calentura de 39,2", 39.2, Level.CALL_NOW), ("tiene 40,1 de fiebre", 40.1, Level.CALL_NOW)],
)  # fmt: skip
def test_temperatures_with_decimal_commas(triager: Triager, text: str, celsius: float, level: Level) -> None:
    result = triager.triage(text)
    assert result.temperature is not None and result.temperature.celsius == pytest.approx(celsius)
    assert result.level == level, result.reason


def test_a_spanish_age_is_not_a_temperature(triager: Triager) -> None:
    assert triager.triage("mi hijo tiene 38 años y está bien").temperature is None


def test_mixed_spanish_and_english_words(triager: Triager) -> None:
    result = triager.triage("tiene fever y le duele mucho la cabeza")
    assert {"fever", "headache"} <= {s.term for s in result.symptoms}


def test_a_named_language_is_read_without_identifying_it(triager: Triager, monkeypatch: pytest.MonkeyPatch) -> None:
    """The action server reads text put together from a conversation in the language its message was
    identified in: no second identification (and no language models loaded for it)."""
    from bot.triage import spanish

    def refuse() -> None:
        raise AssertionError("the language was identified although it was named")

    monkeypatch.setattr(spanish, "default_identifier", refuse)
    assert triager.triage("tengo fiebre y escalofríos", language="es").language == "es"
    assert triager.triage("tengo fiebre y escalofríos", language="es").level.value == "call_now"
    assert triager.triage("he has a fever", language="en").language == "en"
    assert triager.triage("he has a fever", language="es").level.value == "call_now"  # English words are read too
