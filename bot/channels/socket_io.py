"""Rasa's socket.io channel (same events and settings as `socketio` in credentials.yml), with three
changes:
- `session_request` awaits `enter_room`: Rasa 3.6 calls it without `await`, which python-socketio 5.18
  (what Rasa's pins resolve to) made a coroutine, so no reply ever reached a persistent session;
- a custom message is emitted as `{"custom": ...}` (Rasa's output passes it to `emit` as keyword
  arguments, which fails for `{"triage": ...}` and lost the whole turn);
- any message the dialogue failed to answer gets the safe reply of `safety`, and so does one past the
  rate limit of `limits` (without entering the dialogue)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint

from bot.channels.limits import Limits
from bot.channels.safety import guarded, record_safety_net, safe_reply


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

        async def handle(message: UserMessage) -> None:
            output = message.output_channel
            if isinstance(output, SocketIOOutput):
                message.output_channel = TriageSocketIOOutput(output.sio, output.bot_message_evt)
            if not limits.allow(str(message.sender_id)):
                reply, custom = safe_reply(message.text or "")
                await asyncio.to_thread(record_safety_net, message, custom["triage"])
                await message.output_channel.send_text_message(message.sender_id, reply)
                await message.output_channel.send_text_message(
                    message.sender_id, "You have sent many messages in a short time: wait a minute before the next one."
                )
                await message.output_channel.send_custom_json(message.sender_id, custom)
                return
            await safe(message)

        blueprint: Blueprint = super().blueprint(handle)
        sio = self.sio

        @sio.on("session_request", namespace=self.namespace)  # replaces Rasa's handler
        async def session_request(sid: str, data: Any) -> None:
            requested = data.get("session_id") if isinstance(data, dict) else None
            session_id = requested if isinstance(requested, str) and requested else uuid.uuid4().hex
            if self.session_persistence:
                await sio.enter_room(sid, session_id)
            await sio.emit("session_confirm", session_id, room=sid)

        return blueprint
