"""Rate limits on the patient webhooks: the sliding window itself, and a flooding sender over REST and
SMS, who still gets the safe reply (and their escalation recorded) but no longer reaches the dialogue."""

from __future__ import annotations

import json
import uuid

import pytest

from bot.careteam.store import EscalationStore, Query
from bot.channels.limits import Limits, RateLimiter, limit_from_env
from tests.conftest import Assistant
from tests.test_sms import sign, text_of, twilio_fields


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sender_gets_the_limit_per_minute_then_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # others are not affected
    clock.now += 30
    assert not limiter.allow("a")  # refused attempts count: a flood stays refused while it goes on
    clock.now += 61
    assert limiter.allow("a")


def test_zero_turns_a_limit_off_and_bad_settings_keep_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert all(RateLimiter(0).allow("a") for _ in range(1000))
    monkeypatch.setenv("TRIAGE_RATE_PER_SENDER", "lots")
    assert limit_from_env("TRIAGE_RATE_PER_SENDER", 20) == 20
    monkeypatch.setenv("TRIAGE_RATE_PER_SENDER", "-5")
    assert limit_from_env("TRIAGE_RATE_PER_SENDER", 20) == 0


def test_the_address_limit_catches_a_flood_spread_over_many_sender_ids() -> None:
    limits = Limits(per_sender=20, per_address=5)
    answers = [limits.allow(f"sender-{n}", "203.0.113.9") for n in range(6)]
    assert answers == [True] * 5 + [False]
    assert limits.allow("sender-x", "198.51.100.1")


@pytest.mark.integration
def test_a_flooding_web_sender_gets_429_with_the_safe_reply(assistant: Assistant) -> None:
    sender = f"flood-{uuid.uuid4().hex[:8]}"
    for _ in range(20):  # the default limit: 20 a minute
        status, _ = assistant.post(json.dumps({"sender": sender, "message": "hello"}).encode())
        assert status == 200
    status, messages = assistant.post(json.dumps({"sender": sender, "message": "he had a seizure"}).encode())
    assert status == 429
    assert messages[0]["text"].startswith("Call emergency services now: 911.")
    assert "wait a minute" in messages[1]["text"]
    assert messages[-1]["custom"]["triage"]["level"] == "emergency"
    [escalation] = EscalationStore(f"sqlite:///{assistant.db}").queue(Query(search=assistant.sender_id(sender)))
    assert escalation.level == "emergency"
    status, _ = assistant.post(json.dumps({"sender": f"{sender}-other", "message": "hello"}).encode())
    assert status == 200


@pytest.mark.integration
def test_a_flooding_phone_gets_the_safe_reply_by_sms(assistant: Assistant) -> None:
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    for n in range(20):
        form = twilio_fields(phone, f"hello {n}", sid=f"SM{uuid.uuid4().hex}")
        status, _ = assistant.post_form("/webhooks/sms/webhook", form, sign(assistant, form))
        assert status == 200
    form = twilio_fields(phone, "she keeps throwing up", sid=f"SM{uuid.uuid4().hex}")
    status, twiml = assistant.post_form("/webhooks/sms/webhook", form, sign(assistant, form))
    assert status == 200
    assert text_of(twiml).startswith("Call your care team right away")
    assert "wait a minute" in text_of(twiml)
