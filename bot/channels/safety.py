"""The answer of last resort. If the dialogue produced nothing for a patient's message (action server
down, an exception anywhere), the channel still answers: it runs the triage core in-process and says
when to call. These sentences live here, not in the domain, because they must work when the dialogue
machinery (which reads the domain) has failed. An emergency, call-now or unclear safe reply is recorded
as an escalation too (bot/careteam/recorder.py), so the care team sees it although no action ran.

A message refused by a rate limit (bot/channels/limits.py) gets the same safe reply, and
`refuse` answers it and records it as refused: with its words, grouped by the source whose limit
refused it (one incident per flooding address, with a count and one notification), never one
escalation per message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.channel import OutputChannel, UserMessage

from bot import wording
from bot.careteam.recorder import default_recorder
from bot.careteam.store import channel_name
from bot.channels.limits import Refusal
from bot.settings import contacts
from bot.triage import Level, default_triager

logger = logging.getLogger(__name__)

_APOLOGY = "Sorry, I could not finish checking your message."


def safe_reply(text: str) -> tuple[str, dict[str, Any]]:
    """The safe text for `text`, and the triage object it was based on; in Spanish when the message is."""
    numbers = contacts()
    try:
        triage = default_triager().triage(text)
        level, triage_object = triage.level, triage.to_dict()
    except Exception:  # the core failed too: assume the worst that still fits a message
        level, triage_object = Level.UNCLEAR, {"level": Level.UNCLEAR.value, "symptoms": [], "temperature": None}
    language = str(triage_object.get("language") or "en")
    apology = wording.say("safety:apology", _APOLOGY, language)
    suffix = wording.care_team_suffix(numbers.care_team_phone_suffix, language)
    care_team = wording.say(
        "safety:care_team", "Call your care team right away{care_team_phone_suffix}", language,
        care_team_phone_suffix=suffix,
    )  # fmt: skip
    if level == Level.EMERGENCY:
        text_out = wording.say(
            "safety:emergency", "Call emergency services now: {emergency_number}. {apology}", language,
            emergency_number=numbers.emergency_number, apology=apology,
        )  # fmt: skip
    elif level == Level.CALL_NOW:
        terms = ", ".join(wording.term(s["term"], language) for s in triage_object["symptoms"])
        text_out = wording.say(
            "safety:call_now", "{care_team} about: {terms}. {apology}", language,
            care_team=care_team, terms=terms, apology=apology,
        )  # fmt: skip
    else:
        text_out = wording.say(
            "safety:other",
            "{apology} If you feel unwell, {care_team}. If it is severe, call emergency services: {emergency_number}.",
            language,
            apology=apology,
            care_team=care_team[:1].lower() + care_team[1:] if language == "en" else care_team,
            emergency_number=numbers.emergency_number,
        )
    return text_out, {"triage": {**triage_object, "safety_net": True}}


class _Counting(OutputChannel):
    """Passes every bot message on to the channel's own output, counting the texts."""

    def __init__(self, inner: OutputChannel) -> None:
        self.inner = inner
        self.texts = 0

    def name(self) -> str:  # type: ignore[override]
        return str(self.inner.name())

    async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
        if message.get("text"):
            self.texts += 1
        await self.inner.send_response(recipient_id, message)


def guarded(on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Callable[[UserMessage], Awaitable[None]]:
    """Wraps a channel's message handler: a message the dialogue answered with no text, or failed on,
    gets the safe reply and its triage object on the same channel."""

    async def handle(message: UserMessage) -> None:
        counting = _Counting(message.output_channel)
        message.output_channel = counting
        try:
            await on_new_message(message)
        except Exception:
            logger.exception("message handling failed (sender %s); sending the safe reply", message.sender_id)
        if counting.texts == 0:
            logger.warning("no reply from the dialogue (sender %s); sending the safe reply", message.sender_id)
            reply, custom = safe_reply(message.text or "")
            await asyncio.to_thread(record_safety_net, message, custom["triage"])
            await counting.inner.send_text_message(message.sender_id, reply)
            await counting.inner.send_custom_json(message.sender_id, custom)

    return handle


def record_safety_net(message: UserMessage, triage: dict[str, Any], incident: str = "") -> None:
    """Records the escalation the action would have recorded (once: same message id as the tracker's).
    `incident` names the source whose rate limit refused the message, to group a flood."""
    default_recorder().record(
        sender_id=str(message.sender_id),
        channel=channel_name(message.input_channel),
        message_id=str(message.message_id),
        text=message.text or "",
        triage=triage,
        received_at=dt.datetime.now(dt.timezone.utc),
        incident=incident,
    )


async def refuse(message: UserMessage, refusal: Refusal) -> tuple[str, dict[str, Any]]:
    """For a message past a rate limit: the safe reply and its custom object, once the message is recorded
    as refused. A sender over their own limit adds to their own escalation; a message refused by an
    address's limit joins that address's incident unless its sender already has an open escalation."""
    reply, custom = safe_reply(message.text or "")
    triage = {**custom["triage"], "rate_limited": refusal.limit}
    incident = refusal.source if refusal.limit == "address" else ""
    await asyncio.to_thread(record_safety_net, message, triage, incident)
    return reply, custom
