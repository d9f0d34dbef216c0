"""The REST channel at `/webhooks/rest/webhook`, replacing Rasa's built-in one (same name and body:
`{"sender": "...", "message": "..."}`; reply: a JSON list of messages, each with `recipient_id`).

`sender` is the conversation id the server issued (`sessions`): the first message of a conversation
leaves it out, and every reply's `recipient_id` carries the id to send next. A message whose sender is
not an id this server issued for the web (absent, guessed, another patient's, an SMS number) is still
triaged and answered, under a new id, so a client can never write into a conversation it was not given.
`POST /webhooks/rest/session` issues an id without a message (`{"sender": "..."}`). With a body
`{"link": "<token>"}` (the chat page opened from a patient's personal link, `bot.careteam.links`) the new
conversation is bound to that patient when the link is usable, and the answer says so
(`{"sender": "...", "verified": true}`); any other token gets an ordinary, unverified conversation. The
token is never logged.

Differences that matter for patients: a malformed request gets a 400 with a clear error instead of a
traceback, and the message passes the checks every channel shares (`inbound`); a message the dialogue
failed to answer, or has not answered within `TRIAGE_REPLY_BUDGET_S` (10 s: a database that is locked
or down), still gets the safe reply of `safety`; and past the rate limits of `limits` a message gets
a 429 that still carries the safe reply for it (and its escalation is still recorded), without
entering the dialogue.
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

from bot.careteam import links
from bot.channels import inbound, sessions
from bot.channels.limits import Limits, Refusal
from bot.channels.safety import guarded, record_safety_net, refuse, safe_reply
from bot.triage import default_triager

TRIAGE_KEY = "triage"

logger = logging.getLogger(__name__)

_NO_STORE = {"Cache-Control": "no-store"}
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
        ids = sessions.default_sessions()  # read at start-up: a bad secret stops the server with its reason

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/session", methods=["POST"])
        async def session(request: Request) -> HTTPResponse:
            sender = ids.issue(sessions.WEB)
            token = _link_token(request)
            if token is None:
                return response.json({"sender": sender}, headers=_NO_STORE)
            patient = await asyncio.to_thread(links.default_links().open_conversation, token, sender)
            return response.json({"sender": sender, "verified": patient is not None}, headers=_NO_STORE)

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body, problem, status = _read_body(request)
            if problem:
                return response.json({"error": problem}, status=status)
            sender, _ = ids.resume_or_issue(sessions.WEB, body.get("sender"))
            text = inbound.patient_text(body["message"])
            collector = CollectingOutputChannel()
            message = UserMessage(text, collector, sender, input_channel=self.name())
            refusal = limits.check(sender, str(request.remote_addr or request.ip))
            if refusal is not None:
                return await _too_many(message, refusal)
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
                triage = await asyncio.to_thread(default_triager().triage, text)
                await collector.send_custom_json(sender, {TRIAGE_KEY: triage.to_dict()})
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


async def _too_many(message: UserMessage, refusal: Refusal) -> HTTPResponse:
    # Recorded grouped (one incident per flooding address), not as one escalation per message.
    logger.warning("rest channel: %s rate limit reached (sender %s); safe reply only", refusal.limit, message.sender_id)
    reply, custom = await refuse(message, refusal)
    notice = "You have sent many messages in a short time: wait a minute before the next one."
    messages = [
        {"recipient_id": message.sender_id, "text": reply},
        {"recipient_id": message.sender_id, "text": notice},
        {"recipient_id": message.sender_id, "custom": custom},
    ]
    return response.json(messages, status=429, headers={"Retry-After": "60"})


def _link_token(request: Request) -> object:
    """The personal-link token a session request carries, or None (no body, not JSON, no "link")."""
    try:
        body = request.json
    except Exception:
        return None
    return body.get("link") if isinstance(body, dict) else None


def _read_body(request: Request) -> tuple[dict[str, Any], str, int]:
    try:
        body = request.json
    except Exception:
        return {}, 'the body must be JSON: {"sender": "...", "message": "..."}', 400
    if not isinstance(body, dict):
        return {}, 'the body must be a JSON object with "sender" and "message"', 400
    # Any "sender" is accepted (one that is not an issued id gets a new one); "metadata" is dropped.
    problem = inbound.check_message(body.get("message"))
    if problem:
        return {}, problem.error, problem.status
    return {"sender": body.get("sender"), "message": body["message"]}, "", 200
