"""action_triage with rasa_sdk's real Tracker and CollectingDispatcher: what a patient reads, in order."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from bot.actions import triage as triage_action
from bot.actions.triage import ActionTriage
from bot.careteam.recorder import Recorder
from bot.careteam.store import EscalationStore
from bot.triage import Triager
from tests import test_triage_json
from tests.conftest import ROOT

DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def escalations(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> EscalationStore:
    """Each test records escalations in a database of its own."""
    store = EscalationStore(f"sqlite:///{tmp_path / 'escalations.db'}")
    recorder = Recorder(lambda: store, spool=tmp_path / "spool")
    monkeypatch.setattr(triage_action, "default_recorder", lambda: recorder)
    return store


def tracker(text: str, intent: str = "report_symptom", message_id: str = "", **slots: Any) -> Tracker:
    message = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": [], "message_id": message_id}
    return Tracker(
        sender_id="patient-1",
        slots=slots,
        latest_message=message,
        events=[{"event": "user", "timestamp": 1_790_000_000.0, "text": text, "input_channel": "sms"}],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


def run(text: str, intent: str = "report_symptom", **slots: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = ActionTriage().run(dispatcher, tracker(text, intent, **slots), DOMAIN)
    return dispatcher.messages, events


def responses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["response"] for m in messages if m.get("response")]


def slot(events: list[dict[str, Any]], name: str) -> Any:
    return next(e["value"] for e in events if e.get("event") == "slot" and e.get("name") == name)


def test_an_emergency_puts_the_emergency_headline_first_with_the_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_EMERGENCY_NUMBER", "000")
    messages, _ = run("he had a seizure")
    assert messages[0]["response"] == "utter_level_emergency"
    assert messages[0]["emergency_number"] == "000"
    assert messages[1]["response"] == "utter_symptom_line"
    assert messages[1]["term"] == "Seizures"


def test_call_now_names_the_care_team_number_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_CARE_TEAM_PHONE", "+1 555 0100")
    messages, _ = run("my son has a temp of 38.9")
    assert messages[0]["response"] == "utter_level_call_now"
    assert messages[0]["care_team_phone_suffix"] == " at +1 555 0100"
    assert "utter_temperature_advice" in responses(messages)


def test_symptom_lines_come_most_urgent_first() -> None:
    messages, _ = run("a bit of diarrhea and a bad cough")
    lines = [m["term"] for m in messages if m.get("response") == "utter_symptom_line"]
    assert lines == ["Cough", "Diarrhea"]


def test_a_symptom_line_repeats_what_to_do_only_when_the_headline_does_not_say_it() -> None:
    messages, _ = run("a bit of diarrhea and a bad cough")
    lines = {m["term"]: m["what_to_do"] for m in messages if m.get("response") == "utter_symptom_line"}
    assert lines["Cough"] == ""
    assert lines["Diarrhea"].startswith("This is not urgent.")
    severe = run("unbearable diarrhea")[0]
    assert next(m for m in severe if m.get("response") == "utter_symptom_line")["what_to_do"].startswith(
        "You said it is severe."
    )


def test_a_minor_symptom_is_mention() -> None:
    assert responses(run("dry mouth")[0])[0] == "utter_level_mention"


def test_feeling_hot_without_a_number_gives_advice_first_then_asks_for_the_temperature() -> None:
    said = responses(run("I feel hot")[0])
    assert said[0] == "utter_level_call_now"
    assert said.index("utter_ask_temperature") > said.index("utter_symptom_line")


def test_unclear_is_flagged_for_review_and_never_reassuring() -> None:
    messages, events = run("I feel off")
    assert responses(messages)[0] == "utter_level_unclear"
    assert slot(events, "needs_review") is True


def test_a_message_in_another_language_gets_the_unreadable_answer() -> None:
    assert responses(run("j'ai de la fièvre et mal à la tête")[0])[0] == "utter_level_unreadable"


def test_a_denial_gets_what_to_watch_for() -> None:
    assert responses(run("no fever, no rash", intent="deny")[0]) == ["utter_denial_ok"]


def test_every_reply_ends_with_the_triage_object() -> None:
    messages, _ = run("throwing up since lunch")
    assert messages[-1]["custom"]["triage"]["level"] == "call_now"
    assert messages[-1]["custom"]["triage"]["symptoms"][0]["term"] == "vomiting"


def test_history_remembers_symptoms_and_reminds_of_urgent_ones() -> None:
    _, events = run("my son has a fever")
    history = slot(events, "symptom_history")
    assert [item["term"] for item in history] == ["fever"]
    messages, events = run("he also has a dry mouth", symptom_history=history, highest_level="call_now")
    reminder = next(m for m in messages if m.get("response") == "utter_earlier_symptoms")
    assert reminder["earlier"] == "fever"
    assert slot(events, "highest_level") == "call_now"
    assert {item["term"] for item in slot(events, "symptom_history")} == {"fever", "dry mouth"}


def test_a_resolved_symptom_leaves_the_history() -> None:
    history = [{"term": "fever", "level": "call_now", "span": "fever"}]
    messages, events = run("the fever is gone now", symptom_history=history)
    assert slot(events, "symptom_history") == []
    assert "utter_earlier_symptoms" not in responses(messages)


def test_every_response_the_action_uses_is_in_the_domain() -> None:
    texts = [
        "he had a seizure",
        "I feel hot",
        "dry mouth",
        "I feel off",
        "hola amigo",
        "no fever",
        "hello",
        "temp 37.7",
    ]
    for text in texts:
        for name in responses(run(text, symptom_history=[{"term": "fever", "level": "call_now"}])[0]):
            assert name in DOMAIN["responses"], name


def test_an_escalating_reply_is_recorded_before_the_action_returns(escalations: EscalationStore) -> None:
    dispatcher = CollectingDispatcher()
    ActionTriage().run(dispatcher, tracker("he had a seizure", message_id="m-1"), DOMAIN)
    [item] = escalations.queue()
    assert (item.sender_id, item.level, item.status, item.channel) == ("patient-1", "emergency", "new", "sms")
    assert item.terms == ["seizures"]
    assert item.first_message_at.timestamp() == 1_790_000_000.0
    [message] = escalations.messages(item.id)
    assert message["message_id"] == "m-1" and message["text"] == "he had a seizure"


def test_mention_and_none_are_not_escalated(escalations: EscalationStore) -> None:
    run("dry mouth")
    run("hello", intent="greet")
    assert escalations.queue() == []


def test_unclear_is_escalated(escalations: EscalationStore) -> None:
    run("I feel off")
    [item] = escalations.queue()
    assert item.level == "unclear" and item.terms == []


def test_the_patient_gets_the_answer_when_the_database_is_down(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database's folder should be")
    recorder = Recorder(lambda: EscalationStore(f"sqlite:///{blocked / 'triage.db'}"), spool=tmp_path / "spool")
    monkeypatch.setattr(triage_action, "default_recorder", lambda: recorder)
    messages, _ = run("he had a seizure")
    assert messages[0]["response"] == "utter_level_emergency"
    spooled = (tmp_path / "spool" / "escalations.jsonl").read_text().splitlines()
    assert len(spooled) == 1 and '"level": "emergency"' in spooled[0]


@pytest.mark.parametrize(
    ("text", "term"),
    [("could this medicine make me tired?", "Unusual tiredness or weakness"),
     ("should I worry if my ankles swell?", "Bloating or swelling of the face, arms, hands, lower legs, or feet")],
)  # fmt: skip
def test_a_question_about_a_side_effect_gets_the_guide_and_when_to_call_without_an_escalation(
    text: str, term: str, escalations: EscalationStore
) -> None:
    messages, _ = run(text)
    assert responses(messages)[:2] == ["utter_side_effect_info_intro", "utter_side_effect_info"]
    info = messages[1]
    assert info["term"] == term
    assert info["when_to_call"] == "If it happens: call your doctor or care team right away."
    assert info["explanation"]
    assert escalations.queue() == []


def test_someone_elses_symptom_is_not_taken_as_a_denial() -> None:
    messages, _ = run("my friend gets migraines")
    assert responses(messages)[0] == "utter_no_side_effect_found"


def test_a_question_does_not_erase_a_symptom_reported_earlier() -> None:
    earlier = [{"term": "fever", "level": "call_now", "span": "fever"}]
    _, events = run("could this medicine cause a fever?", symptom_history=earlier)
    assert [item["term"] for item in slot(events, "symptom_history")] == ["fever"]
    _, events = run("the fever is gone now", symptom_history=earlier)
    assert slot(events, "symptom_history") == []


# -- the NLU's triage of the message: answered from, never trusted blindly --------------------------------


def parsed(text: str, data: Any, message_id: str = "", **slots: Any) -> Tracker:
    """The tracker as Rasa sends it: the NLU's triage object (JSON, as it travelled) on the latest message."""
    with_triage = tracker(text, message_id=message_id, **slots)
    with_triage.latest_message["triage"] = json.loads(json.dumps(data))
    return with_triage


def reply(of: Tracker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = ActionTriage().run(dispatcher, of, DOMAIN)
    return dispatcher.messages, events


def test_the_action_answers_from_the_nlu_s_triage_without_reading_the_words_again(
    triager: Triager, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = triager.triage("my son had a fit and has a temp of 39.4").to_dict()

    def read_again(text: str) -> None:
        raise AssertionError(f"the core was asked again: {text!r}")

    monkeypatch.setattr(triager, "triage", read_again)
    messages, _ = reply(parsed("my son had a fit and has a temp of 39.4", data))
    assert responses(messages)[:2] == ["utter_level_emergency", "utter_temperature_advice"]


def test_every_message_of_the_sets_gets_the_same_reply_from_the_nlu_s_triage_as_from_its_words(
    triager: Triager, escalations: EscalationStore
) -> None:
    history = [{"term": "fever", "level": "call_now", "span": "fever"}]
    for number, text in enumerate(test_triage_json.texts()):
        slots = {"symptom_history": history} if number % 2 else {}
        from_words = reply(tracker(text, message_id=f"words-{number}", **slots))
        from_nlu = reply(parsed(text, triager.triage(text).to_dict(), message_id=f"nlu-{number}", **slots))
        assert from_nlu == from_words, text
    # Each escalating message was recorded twice (once per id), the same way.
    recorded = {item.level for item in escalations.queue()}
    assert recorded <= {"emergency", "call_now", "unclear"} and recorded


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: {**data, "level": "urgent"},
        lambda data: {**data, "symptoms": "fever"},
        lambda data: {key: value for key, value in data.items() if key != "language"},
        lambda data: {**data, "symptoms": [{**data["symptoms"][0], "start": "0"}]},
        lambda data: [data],
        lambda data: "call_now",
    ],
)
def test_a_malformed_nlu_triage_costs_the_patient_nothing(
    triager: Triager, caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    text = "Zebulon has had a seizure"
    with caplog.at_level(logging.WARNING, logger="bot.actions.triage"):
        messages, events = reply(parsed(text, damage(triager.triage(text).to_dict())))
    assert (messages, events) == run(text)
    assert responses(messages)[0] == "utter_level_emergency"
    [warning] = [r for r in caplog.records if r.name == "bot.actions.triage"]
    assert "malformed" in warning.getMessage() and "Zebulon" not in warning.getMessage()


def test_a_triage_of_other_words_is_not_used(triager: Triager, caplog: pytest.LogCaptureFixture) -> None:
    other = triager.triage("a bit of a dry mouth").to_dict()
    with caplog.at_level(logging.WARNING, logger="bot.actions.triage"):
        messages, _ = reply(parsed("she is having trouble breathing", other))
    assert responses(messages)[0] != "utter_level_mention"
    assert any("not of this message" in r.getMessage() for r in caplog.records)


def test_a_message_without_the_nlu_s_triage_is_triaged_by_the_action() -> None:
    assert responses(run("he had a seizure")[0])[0] == "utter_level_emergency"


@pytest.mark.parametrize(("language", "said"), [("es", "sí"), ("en", "yes")])
def test_a_yes_to_the_symptoms_asked_about_is_answered_in_the_conversations_language(language: str, said: str) -> None:
    """The symptoms asked about are read again in the language the patient's message was read in (the
    catalogue's English terms, which the Spanish reader reads too), so the reply is in that language."""
    from bot.actions.conversation import ActionFollowUp

    asked = [{"term": "fever", "span": "fiebre", "level": "call_now"}]
    state = tracker(said, intent="affirm", asked_symptoms=asked, language=language)
    state.latest_message["triage"] = {"language": language}
    state.latest_message["intent_ranking"] = [{"name": "affirm", "confidence": 1.0}]
    dispatcher = CollectingDispatcher()
    ActionFollowUp().run(dispatcher, state, DOMAIN)
    triage = next(m["custom"]["triage"] for m in dispatcher.messages if (m.get("custom") or {}).get("triage"))
    assert triage["language"] == language
    assert triage["level"] == "call_now"
    assert [s["term"] for s in triage["symptoms"]] == ["fever"]


def test_a_bare_reading_asked_for_is_read_in_the_messages_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reading the assistant asked for is read again as a temperature in the language the NLU read the
    message in: no second identification in the action server (which would load the language models)."""
    from bot.triage import default_triager, spanish

    said = default_triager().triage("38,5").to_dict()
    said["language"] = "es"

    def refuse() -> None:
        raise AssertionError("the action server identified the language again")

    monkeypatch.setattr(spanish, "default_identifier", refuse)
    state = tracker("38,5", awaiting_temperature=True)
    state.latest_message["triage"] = said
    dispatcher = CollectingDispatcher()
    ActionTriage().run(dispatcher, state, DOMAIN)
    triage = next(m["custom"]["triage"] for m in dispatcher.messages if (m.get("custom") or {}).get("triage"))
    assert triage["language"] == "es"
    assert triage["temperature"]["celsius"] == 38.5
    assert triage["level"] == "call_now"
