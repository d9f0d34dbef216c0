"""The socket.io channel as a web widget uses it (session_request, user_uttered, bot_uttered), against
the real servers, including while the action server is down."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import socketio

from tests.conftest import Assistant
from tools import serve

pytestmark = pytest.mark.integration


def converse(assistant: Assistant, text: str, session: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """Sends one message; returns the texts and the triage object the bot emitted for it."""
    session = session or uuid.uuid4().hex
    client = socketio.Client(reconnection=False)
    confirmed, done = threading.Event(), threading.Event()
    texts: list[str] = []
    triage: dict[str, Any] = {}

    @client.on("session_confirm")
    def on_confirm(data: Any) -> None:
        confirmed.set()

    @client.on("bot_uttered")
    def on_bot(data: dict[str, Any]) -> None:
        if data.get("text"):
            texts.append(data["text"])
        custom = data.get("custom") or {}
        if "triage" in custom:
            triage.update(custom["triage"])
            done.set()

    client.connect(f"http://localhost:{assistant.ports.rasa}", socketio_path="/socket.io", wait_timeout=20)
    try:
        client.emit("session_request", {"session_id": session})
        assert confirmed.wait(20), "no session_confirm"
        client.emit("user_uttered", {"message": text, "session_id": session})
        assert done.wait(60), f"no triage object; texts so far: {texts}"
    finally:
        client.disconnect()
    return texts, triage


def test_a_symptom_over_socketio(assistant: Assistant) -> None:
    texts, triage = converse(assistant, "she's been throwing up since lunch")
    assert texts[0].startswith("Call your doctor or care team right away")
    assert triage["level"] == "call_now"


def test_a_safe_answer_over_socketio_while_the_action_server_is_down(assistant: Assistant) -> None:
    assert assistant.actions is not None
    serve.stop(assistant.actions)
    try:
        texts, triage = converse(assistant, "my son had a seizure")
        assert texts[0].startswith("Call emergency services now: 911.")
        assert triage["safety_net"] is True
    finally:
        assistant.start_actions()
