"""The REST channel at `/webhooks/rest/webhook`, replacing Rasa's built-in one (same name and body:
`{"sender": "...", "message": "..."}`; reply: a JSON list of messages).

Differences that matter for patients: a malformed request gets a 400 with a clear error instead of a
traceback; a message the dialogue failed to answer, or has not answered within `TRIAGE_REPLY_BUDGET_S`
(10 s: a database that is locked or down), still gets the safe reply of `safety`; and past the
rate limits of `limits` a message gets a 429 that still carries the safe reply for it (and its
escalation is still recorded), without entering the dialogue.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from bot.channels.limits import Limits
from bot.channels.safety import guarded, record_safety_net, safe_reply
from bot.triage import default_triager

TRIAGE_KEY = "triage"

logger = logging.getLogger(__name__)

#: Longest accepted message, in characters; longer ones get a 413 (a patient message is not a book).
MAX_MESSAGE_CHARS = 5000
MAX_SENDER_CHARS = 128
#: A reply the dialogue has not produced within this many seconds is replaced by the safe reply.
REPLY_BUDGET_S = float(os.environ.get("TRIAGE_REPLY_BUDGET_S", "10"))
_background: set[asyncio.Future[Any]] = set()


class TriageRestInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"triage_rest_{id(self)}", __name__)
        handle = guarded(on_new_message)
        limits = Limits()

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body, problem, status = _read_body(request)
            if problem:
                return response.json({"error": problem}, status=status)
            sender, text = body["sender"], body["message"]
            collector = CollectingOutputChannel()
            message = UserMessage(text, collector, sender, input_channel=self.name(), metadata=body.get("metadata"))
            if not limits.allow(sender, str(request.remote_addr or request.ip)):
                return await _too_many(message)
            task = asyncio.ensure_future(handle(message))
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=REPLY_BUDGET_S)
            except asyncio.TimeoutError:
                # The dialogue goes on (and stores the turn when it can); the patient is answered now.
                logger.warning("rest channel: reply budget of %.0f s exceeded (sender %s)", REPLY_BUDGET_S, sender)
                return await _safe_now(message)
            except asyncio.CancelledError:
                logger.error("rest channel: message handling was cancelled (sender %s)", sender)
                return await _safe_now(message)
            if not any(TRIAGE_KEY in (item.get("custom") or {}) for item in collector.messages):
                # Every reply ends with the triage object (DESIGN.md), greetings and questions included.
                await collector.send_custom_json(sender, {TRIAGE_KEY: default_triager().triage(text).to_dict()})
            return response.json(collector.messages)

        return webhook


async def _safe_now(message: UserMessage) -> HTTPResponse:
    """The safe reply at once; its escalation is recorded in the background (the database may be what
    is slow), under the message's id, so the dialogue's own record later does not double it."""
    reply, custom = safe_reply(message.text or "")
    pending = asyncio.ensure_future(asyncio.to_thread(record_safety_net, message, custom["triage"]))
    _background.add(pending)
    pending.add_done_callback(_background.discard)
    sender = message.sender_id
    return response.json([{"recipient_id": sender, "text": reply}, {"recipient_id": sender, "custom": custom}])


async def _too_many(message: UserMessage) -> HTTPResponse:
    logger.warning("rest channel: rate limit reached (sender %s); safe reply only", message.sender_id)
    reply, custom = safe_reply(message.text or "")
    await asyncio.to_thread(record_safety_net, message, custom["triage"])
    notice = "You have sent many messages in a short time: wait a minute before the next one."
    messages = [
        {"recipient_id": message.sender_id, "text": reply},
        {"recipient_id": message.sender_id, "text": notice},
        {"recipient_id": message.sender_id, "custom": custom},
    ]
    return response.json(messages, status=429, headers={"Retry-After": "60"})


def _read_body(request: Request) -> tuple[dict[str, Any], str, int]:
    try:
        body = request.json
    except Exception:
        return {}, 'the body must be JSON: {"sender": "...", "message": "..."}', 400
    if not isinstance(body, dict):
        return {}, 'the body must be a JSON object with "sender" and "message"', 400
    sender, text = body.get("sender"), body.get("message")
    if not isinstance(sender, str) or not sender.strip() or len(sender) > MAX_SENDER_CHARS:
        return {}, f'"sender" must be a non-empty string of at most {MAX_SENDER_CHARS} characters', 400
    if not isinstance(text, str):
        return {}, '"message" must be a string', 400
    if len(text) > MAX_MESSAGE_CHARS:
        return {}, f'"message" is longer than {MAX_MESSAGE_CHARS} characters', 413
    metadata = body.get("metadata")
    return {"sender": sender, "message": text, "metadata": metadata if isinstance(metadata, dict) else None}, "", 200
