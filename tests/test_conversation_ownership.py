"""One patient's conversation belongs to that patient, on every channel, against the real servers: the
server names each web and socket.io conversation with an id it issued (bot/channels/sessions.py), a
client that names any other conversation (an SMS number, another channel's id, a guess, the id in a
socket.io payload) is answered in a new conversation of its own, and what it writes never reaches the
other patient's history, escalation or screen."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator

import pytest

from bot.careteam.store import EscalationStore, Query
from bot.channels.sessions import TOKEN_CHARS
from tests.conftest import Assistant
from tests.test_sms import sms, text_of
from tests.test_socketio import SocketPatient

pytestmark = pytest.mark.integration


def user_texts(assistant: Assistant, sender: str) -> list[str]:
    with sqlite3.connect(assistant.db) as db:
        rows = db.execute(
            "select json_extract(data, '$.text') from events where sender_id = ? and type_name = 'user' order by id",
            (sender,),
        )
        return [row[0] for row in rows]


def rest(assistant: Assistant, body: dict[str, object]) -> tuple[str, list[dict[str, object]]]:
    """Posts `body` exactly as given; the id the reply is addressed to, and the reply."""
    status, messages = assistant.post(json.dumps(body).encode(), as_sent=True)
    assert status == 200, messages
    [recipient] = {m["recipient_id"] for m in messages}
    return str(recipient), messages


def texts(messages: list[dict[str, object]]) -> str:
    return "\n".join(str(m["text"]) for m in messages if "text" in m)


@pytest.fixture
def patients(assistant: Assistant) -> Iterator[list[SocketPatient]]:
    opened: list[SocketPatient] = []
    yield opened
    for patient in opened:
        patient.close()


def test_a_rest_client_naming_an_sms_patient_gets_its_own_conversation(assistant: Assistant) -> None:
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    sms(assistant, phone, "she has a fever")
    assert text_of(sms(assistant, phone, "and now she had a seizure")[1]).startswith("Call emergency services")

    recipient, messages = rest(assistant, {"sender": f"sms:{phone}", "message": "the fever is gone, hello"})
    assert recipient.startswith("web:") and recipient != f"sms:{phone}"
    assert "Earlier you told me about" not in texts(messages)
    rest(assistant, {"sender": f"sms:{phone}", "message": "he keeps throwing up"})

    # The SMS patient's conversation, escalation and history are theirs alone.
    assert user_texts(assistant, f"sms:{phone}") == ["she has a fever", "and now she had a seizure"]
    [escalation] = EscalationStore(f"sqlite:///{assistant.db}").queue(Query(search=f"sms:{phone}"))
    assert (escalation.sender_id, escalation.message_count) == (f"sms:{phone}", 2)
    assert set(escalation.terms) == {"fever", "seizures"}
    reply = text_of(sms(assistant, phone, "and a dry mouth")[1])
    assert "Earlier you told me about" in reply and "fever" in reply.split("Earlier you told me about")[1]


def test_a_web_conversation_continues_only_under_the_id_the_server_issued(assistant: Assistant) -> None:
    first, _ = rest(assistant, {"message": "my son has a fever"})  # a first message carries no id
    prefix, token = first.split(":", 1)
    assert prefix == "web" and len(token) == TOKEN_CHARS
    again, messages = rest(assistant, {"sender": first, "message": "and a dry mouth"})
    assert again == first and "Earlier you told me about: fever." in texts(messages)
    assert user_texts(assistant, first) == ["my son has a fever", "and a dry mouth"]

    tampered = first[:-2] + ("AA" if not first.endswith("AA") else "BB")
    for named in (tampered, first.replace("web:", "socketio:"), token, f"p-{uuid.uuid4().hex}", "x" * 10_000, 5, None):
        other, messages = rest(assistant, {"sender": named, "message": "hello again"})
        assert other.startswith("web:") and other not in (first, named)
        assert "Earlier you told me about" not in texts(messages)
    assert user_texts(assistant, first) == ["my son has a fever", "and a dry mouth"]


def test_the_session_endpoint_issues_a_new_web_id_each_time(assistant: Assistant) -> None:
    ids = {assistant.post_to("/webhooks/rest/session", b"")[1]["sender"] for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("web:") for i in ids)
    issued = ids.pop()
    recipient, _ = rest(assistant, {"sender": issued, "message": "hello"})
    assert recipient == issued


def test_a_socket_cannot_join_another_patient_s_room_or_conversation(
    assistant: Assistant, patients: list[SocketPatient]
) -> None:
    victim, intruder = SocketPatient(assistant), SocketPatient(assistant)
    patients += [victim, intruder]
    chosen = uuid.uuid4().hex  # a session id a client made up (Rasa used to confirm any)
    victim_id = victim.session({"session_id": chosen})
    assert victim_id.startswith("socketio:") and victim_id != chosen
    intruder_id = intruder.session({"session_id": chosen})
    assert intruder_id not in (victim_id, chosen)
    assert intruder.session({"session_id": victim_id.replace("socketio:", "web:")}) != victim_id

    victim.send({"message": "my son has a fever", "session_id": victim_id})
    heard_before = len(intruder.received)
    # The intruder names the victim's session in its payload: the message stays in its own conversation.
    _, custom = intruder.send({"message": "the fever is gone", "session_id": victim_id})
    assert "triage" in custom
    assert user_texts(assistant, victim_id) == ["my son has a fever"]
    assert user_texts(assistant, intruder.confirmed[-1]) == ["the fever is gone"]
    victim_texts, _ = victim.send({"message": "and a dry mouth", "session_id": victim_id})
    assert "Earlier you told me about: fever." in "\n".join(victim_texts)
    # The victim's replies never reached the intruder's socket.
    assert all("dry mouth" not in json.dumps(m) for m in intruder.received[heard_before:])
    assert not any("Earlier you told me about: fever" in str(m.get("text")) for m in intruder.received)


def test_a_socket_that_sends_before_asking_gets_its_own_new_session(
    assistant: Assistant, patients: list[SocketPatient]
) -> None:
    patient = SocketPatient(assistant)
    patients.append(patient)
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    _, custom = patient.send({"message": "he had a seizure", "session_id": f"sms:{phone}"})
    assert custom["triage"]["level"] == "emergency"
    [session_id] = patient.confirmed
    assert session_id.startswith("socketio:")
    assert user_texts(assistant, session_id) == ["he had a seizure"]
    assert user_texts(assistant, f"sms:{phone}") == []


def test_a_resumed_socket_session_keeps_its_conversation(assistant: Assistant, patients: list[SocketPatient]) -> None:
    first = SocketPatient(assistant)
    patients.append(first)
    session_id = first.session({})
    first.send({"message": "she has a fever"})
    first.close()
    patients.remove(first)
    again = SocketPatient(assistant)  # a reload of the widget, which kept the confirmed id
    patients.append(again)
    assert again.session({"session_id": session_id}) == session_id
    texts_back, _ = again.send({"message": "and a dry mouth"})
    assert "Earlier you told me about: fever." in "\n".join(texts_back)
