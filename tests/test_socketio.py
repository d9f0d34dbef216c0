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


class SocketPatient:
    """A socket.io client as a web widget is one: it asks for a session, sends `user_uttered`, and
    collects every `bot_uttered` it receives (its own replies, and anything else sent to its room)."""

    def __init__(self, assistant: Assistant) -> None:
        self.client = socketio.Client(reconnection=False)
        self.received: list[dict[str, Any]] = []
        self.confirmed: list[str] = []
        self._changed = threading.Condition()

        @self.client.on("session_confirm")
        def on_confirm(data: Any) -> None:
            with self._changed:
                self.confirmed.append(data)
                self._changed.notify_all()

        @self.client.on("bot_uttered")
        def on_bot(data: dict[str, Any]) -> None:
            with self._changed:
                self.received.append(data)
                self._changed.notify_all()

        self.client.connect(f"http://localhost:{assistant.ports.rasa}", socketio_path="/socket.io", wait_timeout=20)

    def session(self, request: Any) -> str:
        """Sends `session_request` with `request`; the session id the server confirmed."""
        with self._changed:
            before = len(self.confirmed)
        self.client.emit("session_request", request)
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.confirmed) > before, timeout=20), "no session_confirm"
            return self.confirmed[-1]

    def send(self, payload: Any, timeout: float = 60) -> tuple[list[str], dict[str, Any]]:
        """Emits `user_uttered` with `payload`; the texts of the reply and its last custom object (the
        triage object, or an error)."""
        with self._changed:
            before = len(self.received)
        self.client.emit("user_uttered", payload)

        def finished() -> bool:
            return any("custom" in m for m in self.received[before:])

        with self._changed:
            assert self._changed.wait_for(finished, timeout=timeout), f"no reply: {self.received[before:]}"
            reply = self.received[before:]
        texts = [m["text"] for m in reply if m.get("text")]
        return texts, next(m["custom"] for m in reversed(reply) if "custom" in m)

    def send_any(self, payload: Any, quiet_s: float = 1.0, timeout: float = 60) -> list[dict[str, Any]]:
        """Emits `user_uttered` with `payload`; every message that came back until none came for
        `quiet_s` (a reply without a custom object has no other end)."""
        with self._changed:
            before = len(self.received)
        self.client.emit("user_uttered", payload)
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.received) > before, timeout=timeout), "no reply"
            while self._changed.wait(timeout=quiet_s):
                pass
            return self.received[before:]

    def close(self) -> None:
        # Closed at the engine.io level without waiting for the long-poll in flight (the client has
        # only the polling transport here): a plain disconnect() waits up to 30 s for it to return.
        self.client.eio.disconnect(abort=True)


def converse(assistant: Assistant, text: str, session: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """Sends one message in a new session; returns the texts and the triage object the bot emitted."""
    patient = SocketPatient(assistant)
    try:
        confirmed = patient.session({"session_id": session or uuid.uuid4().hex})
        texts, custom = patient.send({"message": text, "session_id": confirmed})
    finally:
        patient.close()
    assert "triage" in custom, custom
    return texts, custom["triage"]


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
