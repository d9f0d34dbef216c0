"""A turn slower than the SMS reply budget: the webhook answers with the safe reply at once, and the
full reply follows through Twilio's messaging API. Twilio's HTTP layer is replaced by a recorder (no
network); the channel, its store and the safe reply are the real ones."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from twilio.http import HttpClient
from twilio.http.response import Response

from bot.channels import sms
from bot.channels.sms_store import SmsStore


class RecordingTwilio(HttpClient):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(logger=logging.getLogger("twilio.recorder"), is_async=False)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, uri: str, params: Any = None, data: Any = None, **kwargs: Any) -> Response:
        self.sent.append({"method": method, "uri": uri, "data": dict(data or {})})
        body = {"sid": "SM" + "1" * 32, "status": "queued", "to": data["To"], "from": data["From"]}
        return Response(201, json.dumps(body))


def test_a_slow_turn_gets_the_safe_reply_now_and_the_full_reply_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms, "REPLY_BUDGET_S", 0.2)
    channel = sms.SmsInput(auth_token="token", account_sid="AC" + "0" * 32, from_number="+15550009999")
    twilio = RecordingTwilio()
    channel.http_client = twilio
    store = SmsStore(f"sqlite:///{tmp_path / 'sms.db'}")

    async def slow_dialogue(message: Any) -> None:
        await asyncio.sleep(0.5)
        await message.output_channel.send_text_message(message.sender_id, "Call emergency services now: 911.")

    async def scenario() -> tuple[str, str]:
        reply = await channel._answer(slow_dialogue, "+15550000001", "he had a seizure", store)
        await asyncio.sleep(0.6)  # the dialogue finishes after the webhook has answered
        return reply

    reply, status = asyncio.run(scenario())
    assert status == "answered"
    assert reply.startswith("Call emergency services now: 911.")  # the safe reply, from the core
    assert len(twilio.sent) == 1
    assert twilio.sent[0]["data"] == {
        "To": "+15550000001",
        "From": "+15550009999",
        "Body": "Call emergency services now: 911.",
    }


def test_no_late_reply_to_an_opted_out_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sms, "REPLY_BUDGET_S", 0.1)
    channel = sms.SmsInput(auth_token="token", account_sid="AC" + "0" * 32, from_number="+15550009999")
    twilio = RecordingTwilio()
    channel.http_client = twilio
    store = SmsStore(f"sqlite:///{tmp_path / 'sms.db'}")
    store.set_opt_out("+15550000002", True)

    async def slow_dialogue(message: Any) -> None:
        await asyncio.sleep(0.3)
        await message.output_channel.send_text_message(message.sender_id, "Call your care team right away.")

    async def scenario() -> tuple[str, str]:
        reply = await channel._answer(slow_dialogue, "+15550000002", "fever", store)
        await asyncio.sleep(0.4)
        return reply

    assert asyncio.run(scenario()) == ("", "opted_out")
    assert twilio.sent == []
