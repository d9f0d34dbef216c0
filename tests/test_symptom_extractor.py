"""The Rasa graph component: symptom entities, the triage object on the message, the intent decided
by the triage core for symptom messages, and a fingerprint that follows the knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.symptom_extractor import SymptomExtractor


@pytest.fixture(scope="module")
def extractor() -> SymptomExtractor:
    return SymptomExtractor(SymptomExtractor.get_default_config())


def parse(extractor: SymptomExtractor, text: str, intent: str = "greet") -> Message:
    message = Message(data={"text": text, "intent": {"name": intent, "confidence": 0.9}})
    extractor.process([message])
    return message


def test_one_entity_per_symptom_with_the_catalogue_term_and_offsets(extractor: SymptomExtractor) -> None:
    text = "she's been puking and has a temp of 39"
    message = parse(extractor, text)
    entities = {e["value"]: e for e in message.get("entities")}
    assert set(entities) == {"vomiting", "fever"}
    vomit = entities["vomiting"]
    assert text[vomit["start"] : vomit["end"]] == "puking"
    assert vomit["entity"] == "symptom" and vomit["extractor"] == "SymptomExtractor"


def test_the_triage_object_rides_on_the_message(extractor: SymptomExtractor) -> None:
    message = parse(extractor, "he had a convulsion")
    assert message.get("triage")["level"] == "emergency"
    assert "triage" in message.as_dict(only_output_properties=True)


def test_a_symptom_message_becomes_report_symptom_whatever_the_classifier_said(extractor: SymptomExtractor) -> None:
    message = Message(
        data={
            "text": "hi, my son is throwing up",
            "intent": {"name": "greet", "confidence": 0.95},
            "intent_ranking": [{"name": "greet", "confidence": 0.95}, {"name": "report_symptom", "confidence": 0.05}],
        }
    )
    extractor.process([message])
    assert message.get("intent") == {"name": "report_symptom", "confidence": 1.0}
    # alone in the ranking, so FallbackClassifier's ambiguity check cannot turn it into nlu_fallback
    assert message.get("intent_ranking") == [{"name": "report_symptom", "confidence": 1.0}]
    assert message.get("classifier_intent_ranking")[0]["name"] == "greet"


def test_an_unclear_complaint_is_a_symptom_report_too(extractor: SymptomExtractor) -> None:
    assert parse(extractor, "I feel off", intent="greet").get("intent")["name"] == "report_symptom"


def test_a_greeting_keeps_its_intent(extractor: SymptomExtractor) -> None:
    message = parse(extractor, "hello there", intent="greet")
    assert message.get("intent")["name"] == "greet"
    assert message.get("entities") == []


def test_the_fingerprint_changes_with_the_knowledge_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bot.triage.knowledge import DEFAULT_DIR

    before = SymptomExtractor.fingerprint_addon({})
    copy = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIR, copy)
    monkeypatch.setenv("TRIAGE_KNOWLEDGE_DIR", str(copy))
    assert SymptomExtractor.fingerprint_addon({}) == before
    with (copy / "spelling.csv").open("a", encoding="utf-8") as handle:
        handle.write("tummeh,tummy,test\n")
    assert SymptomExtractor.fingerprint_addon({}) != before
