"""The real assistant on localhost: the action server and the Rasa server started as `make run` starts
them, spoken to through the REST webhook as a web client would. Also: the conversation survives a
restart of the Rasa server (SQLite tracker store), and a symptom still gets a safe answer while the
action server is down."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request

import pytest

from bot.careteam.store import EscalationStore, Query
from tests.conftest import Assistant

pytestmark = pytest.mark.integration


def test_an_emergency(assistant: Assistant) -> None:
    text, triage = assistant.say("p-emergency", "my daughter is having a fit")
    assert text.startswith("Call emergency services now: 911.")
    assert triage["level"] == "emergency" and triage["symptoms"][0]["term"] == "seizures"


def test_a_call_now(assistant: Assistant) -> None:
    text, triage = assistant.say("p-call", "she has a temperature of 39.1")
    assert text.startswith("Call your doctor or care team right away at +1 555 0100.")
    assert "This is a fever" in text
    assert triage["level"] == "call_now" and triage["temperature"]["celsius"] == 39.1


def test_a_mention(assistant: Assistant) -> None:
    text, triage = assistant.say("p-mention", "a bit of diarrhea today")
    assert text.startswith("This is not urgent.")
    assert triage["level"] == "mention"


def test_a_denial(assistant: Assistant) -> None:
    text, triage = assistant.say("p-deny", "no fever and no chills today")
    assert text.startswith("Good. Keep watching for fever")
    assert triage["level"] == "none" and {s["term"] for s in triage["excluded"]} == {"fever", "chills"}


def test_an_unclear_message(assistant: Assistant) -> None:
    text, triage = assistant.say("p-unclear", "something feels wrong with him")
    assert "a member of your care team will read your message" in text
    assert triage["level"] == "unclear"


def test_a_question_about_the_treatment(assistant: Assistant) -> None:
    text, triage = assistant.say("p-faq", "how many weeks does one cycle last?")
    assert "every day for 4 weeks, followed by a 2-week break" in text
    assert triage["level"] == "none"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"sender": "x", "message": 5}', "application/json", 400),
        (b'{"sender": "x"}', "application/json", 400),
        (b'["sender", "message"]', "application/json", 400),
        (json.dumps({"sender": "x", "message": "a" * 6000}).encode(), "application/json", 413),
    ],
)
def test_malformed_requests_get_a_clear_4xx(assistant: Assistant, body: bytes, content_type: str, status: int) -> None:
    got, answer = assistant.post(body, content_type)
    assert got == status
    assert "error" in answer


def test_the_conversation_and_its_escalation_survive_a_restart_of_the_rasa_server(assistant: Assistant) -> None:
    assistant.say("p-restart", "my son has a fever")
    assert assistant.rasa is not None
    assistant.rasa.kill()  # a crash, not a clean stop: what was answered must already be on disk
    assistant.rasa.wait()
    with sqlite3.connect(assistant.db) as db:
        stored = db.execute(
            "select count(*) from events where sender_id = ?", (assistant.sender_id("p-restart"),)
        ).fetchone()[0]
    assert stored > 0
    assistant.start_rasa()
    text, triage = assistant.say("p-restart", "and now he's also a bit thirsty")
    assert triage["level"] == "mention"
    assert "Earlier you told me about: fever." in text
    [escalation] = EscalationStore(f"sqlite:///{assistant.db}").queue(Query(search=assistant.sender_id("p-restart")))
    assert (escalation.level, escalation.terms, escalation.message_count) == ("call_now", ["fever"], 1)


def test_a_symptom_gets_a_safe_answer_while_the_action_server_is_down(assistant: Assistant) -> None:
    assert assistant.actions is not None
    assistant.actions.kill()  # killed mid-conversation
    assistant.actions.wait()
    try:
        text, triage = assistant.say("p-down", "he had a convulsion")
        assert text.startswith("Call emergency services now: 911.")
        assert triage["safety_net"] is True and triage["level"] == "emergency"
        text, triage = assistant.say("p-down", "she keeps throwing up")
        assert text.startswith("Call your care team right away at +1 555 0100 about: vomiting.")
        # The care team sees it although no action ran: the channel recorded the escalation.
        [escalation] = EscalationStore(f"sqlite:///{assistant.db}").queue(Query(search=assistant.sender_id("p-down")))
        assert (escalation.level, escalation.message_count) == ("emergency", 2)
        assert set(escalation.terms) == {"seizures", "vomiting"}
    finally:
        assistant.start_actions()
    text, triage = assistant.say("p-down", "and a dry mouth")
    assert text.startswith("This is not urgent.")
    assert "safety_net" not in triage
    text, triage = assistant.say("p-down", "now he has a rash")
    assert "safety_net" not in triage
    [escalation] = EscalationStore(f"sqlite:///{assistant.db}").queue(Query(search=assistant.sender_id("p-down")))
    assert escalation.message_count == 3  # the conversation continues, in the same episode


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/conversations/p-restart/tracker"),
        ("GET", "/conversations/p-restart/story"),
        ("POST", "/conversations/p-restart/messages"),
        ("POST", "/model/parse"),
        ("GET", "/status"),
        ("GET", "/domain"),
        ("PUT", "/model"),
    ],
)
def test_rasa_s_http_api_is_off(assistant: Assistant, method: str, path: str) -> None:
    """Nobody reads or writes a conversation except through the patient channels (Rasa runs without
    --enable-api); a channel answers only the sender who wrote."""
    request = urllib.request.Request(f"http://localhost:{assistant.ports.rasa}{path}", data=b"{}", method=method)
    request.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code in (404, 405)


def test_a_reply_goes_only_to_its_sender(assistant: Assistant) -> None:
    assistant.say("p-private-a", "my son has a fever")
    assistant.say("p-private-b", "hello")
    status, messages = assistant.post(json.dumps({"sender": "p-private-b", "message": "what should I do?"}).encode())
    assert status == 200
    assert {m["recipient_id"] for m in messages} == {assistant.sender_id("p-private-b")}
    assert "fever" not in json.dumps(messages)
