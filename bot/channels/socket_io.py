"""Rasa's socket.io channel (same events and settings as `socketio` in credentials.yml), with these
changes:
- the conversation is the server's: `session_request` confirms the `session_id` the client asks for
  only when the server issued it for socket.io (`sessions`), else a new one, and a message always goes
  to the conversation this socket was confirmed with, never to the `session_id` in its payload (a
  socket that sends before asking gets a new conversation and its `session_confirm` first). So a
  client cannot join another patient's room or write into their conversation;
- `session_request` awaits `enter_room`: Rasa 3.6 calls it without `await`, which python-socketio 5.18
  (what Rasa's pins resolve to) made a coroutine, so no reply ever reached a persistent session;
- every message passes the checks all channels share (`inbound`: a string of at most 5,000
  characters, metadata dropped); one that does not gets a reply that says what was wrong and when to
  call, and engine.io drops a packet over `MAX_PACKET_CHARS` before anything parses it (an 850 KB
  message used to hold the event loop, and every patient, for 71 s); the per-address rate limit
  counts the socket's address, as on REST;
- a custom message is emitted as `{"custom": ...}` (Rasa's output passes it to `emit` as keyword
  arguments, which fails for `{"triage": ...}` and lost the whole turn);
- any message the dialogue failed to answer gets the safe reply of `safety`, and so does one past the
  rate limit of `limits` (without entering the dialogue)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint

from bot.channels import inbound, sessions
from bot.channels.limits import Limits
from bot.channels.safety import guarded, refuse
from bot.settings import contacts

#: Largest engine.io packet read, in characters: any message within the 5,000-character limit fits,
#: in any encoding (a character escaped as a surrogate pair takes 12); larger ones close the socket.
MAX_PACKET_CHARS = 128 * 1024


class TriageSocketIOOutput(SocketIOOutput):
    async def send_custom_json(self, recipient_id: str, json_message: dict[str, Any], **kwargs: Any) -> None:
        await self._send_message(recipient_id, {"custom": json_message})


class TriageSocketIOInput(SocketIOInput):
    @classmethod
    def name(cls) -> str:
        return "socketio"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        safe = guarded(on_new_message)
        limits = Limits()
        ids = sessions.default_sessions()  # read at start-up: a bad secret stops the server with its reason

        async def handle(message: UserMessage, address: str = "") -> None:
            output = message.output_channel
            if isinstance(output, SocketIOOutput):
                message.output_channel = TriageSocketIOOutput(output.sio, output.bot_message_evt)
            refusal = limits.check(str(message.sender_id), address)
            if refusal is not None:
                reply, custom = await refuse(message, refusal)  # recorded grouped, not one escalation each
                await message.output_channel.send_text_message(message.sender_id, reply)
                await message.output_channel.send_text_message(
                    message.sender_id, "You have sent many messages in a short time: wait a minute before the next one."
                )
                await message.output_channel.send_custom_json(message.sender_id, custom)
                return
            await safe(message)

        blueprint: Blueprint = super().blueprint(handle)
        sio = self.sio
        assert sio is not None  # made by Rasa's blueprint
        sio.eio.max_http_buffer_size = MAX_PACKET_CHARS
        #: The conversation each connected socket was confirmed with (dropped when it disconnects).
        confirmed: dict[str, str] = {}

        async def confirm(sid: str, requested: object) -> str:
            session_id, _ = ids.resume_or_issue(sessions.SOCKETIO, requested if self.session_persistence else None)
            previous = confirmed.get(sid)
            if previous and previous != session_id:
                await sio.leave_room(sid, previous, namespace=self.namespace)
            confirmed[sid] = session_id
            await sio.enter_room(sid, session_id, namespace=self.namespace)
            await sio.emit("session_confirm", session_id, room=sid, namespace=self.namespace)
            return session_id

        # The three handlers below replace Rasa's.
        @sio.on("session_request", namespace=self.namespace)
        async def session_request(sid: str, data: Any = None) -> None:
            await confirm(sid, data.get("session_id") if isinstance(data, dict) else None)

        @sio.on("disconnect", namespace=self.namespace)
        async def disconnect(sid: str) -> None:
            confirmed.pop(sid, None)

        @sio.on(self.user_message_evt, namespace=self.namespace)
        async def user_uttered(sid: str, data: Any = None) -> None:
            session_id = confirmed.get(sid) or await confirm(sid, None)
            output = TriageSocketIOOutput(sio, self.bot_message_evt)
            text = data.get("message") if isinstance(data, dict) else None
            problem = inbound.check_message(text)
            if problem is not None or not isinstance(text, str):
                await output.send_text_message(session_id, _refusal(problem or inbound.NOT_TEXT))
                await output.send_custom_json(session_id, {"error": (problem or inbound.NOT_TEXT).error})
                return
            message = UserMessage(inbound.patient_text(text), output, session_id, input_channel=self.name())
            # The address counts too, as on REST: a new session for every message escapes the sender limit.
            await handle(message, _address(sio, sid, self.namespace))

        return blueprint


def _address(sio: Any, sid: str, namespace: str | None) -> str:
    """The client's address from the socket's handshake request (Sanic's, so SANIC_PROXIES_COUNT
    applies; engine.io's own REMOTE_ADDR under Sanic is always 127.0.0.1)."""
    request = (sio.get_environ(sid, namespace=namespace) or {}).get("sanic.request")
    return str(getattr(request, "remote_addr", "") or getattr(request, "ip", "") or "")


def _refusal(problem: inbound.Problem) -> str:
    """What a patient is told when their message could not be read: what to do, and when to call."""
    numbers = contacts()
    why = (
        f"Your message is longer than {inbound.MAX_MESSAGE_CHARS:,} characters: send it in shorter parts."
        if problem == inbound.TOO_LONG
        else "I could not read your message: write how you feel in words."
    )
    return (
        f"{why} If you feel unwell, call your care team right away{numbers.care_team_phone_suffix}. "
        f"If it is severe, call emergency services: {numbers.emergency_number}."
    )
