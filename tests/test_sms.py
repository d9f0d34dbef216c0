"""The SMS channel through the real Rasa server, with requests built and signed exactly as Twilio does
(form-encoded, X-Twilio-Signature from the twilio library's RequestValidator)."""

from __future__ import annotations

import http.client
import itertools
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from sanic.request import RequestParameters
from twilio.request_validator import RequestValidator

from bot.channels import sms_text
from tests.conftest import SMS_AUTH_TOKEN, Assistant

pytestmark = pytest.mark.integration
PATH = "/webhooks/sms/webhook"
_sids = itertools.count(1)


def twilio_fields(phone: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid or f"SM{next(_sids):032d}",
        "NumMedia": "0",
        "MessageSid": sid or f"SM{next(_sids):032d}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15550009999",
        "Body": body,
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }


def sign(assistant: Assistant, fields: dict[str, str]) -> str:
    url = f"http://localhost:{assistant.ports.rasa}{PATH}"
    return str(RequestValidator(SMS_AUTH_TOKEN).compute_signature(url, fields))


def text_of(twiml: str) -> str:
    messages = ET.fromstring(twiml).findall("Message")
    return "\n".join(message.text or "" for message in messages)


def sms(assistant: Assistant, phone: str, body: str, sid: str | None = None) -> tuple[int, str]:
    fields = twilio_fields(phone, body, sid)
    status, twiml = assistant.post_form(PATH, fields, sign(assistant, fields))
    return status, twiml


def stored(assistant: Assistant, phone: str) -> list[tuple[str, str]]:
    with sqlite3.connect(assistant.db) as db:
        return db.execute(
            "select body, status from sms_messages where phone = ? order by received_at", (phone,)
        ).fetchall()


def test_an_emergency_by_sms(assistant: Assistant) -> None:
    status, twiml = sms(assistant, "+15550000001", "my boy had a seizure")
    reply = text_of(twiml)
    assert status == 200
    assert reply.startswith("Call emergency services now: 911.")
    assert sms_text.is_gsm7(reply) and sms_text.segments(reply) <= 3


def test_a_call_now_by_sms(assistant: Assistant) -> None:
    reply = text_of(sms(assistant, "+15550000002", "temp 38.7 and shivering")[1])
    assert reply.startswith("Call your doctor or care team right away at +1 555 0100.")
    assert "38.0 C" in reply  # the degree sign is not GSM-7
    assert sms_text.is_gsm7(reply) and sms_text.segments(reply) <= 3


def test_a_mention_by_sms(assistant: Assistant) -> None:
    reply = text_of(sms(assistant, "+15550000003", "my mouth is a bit dry")[1])
    assert reply.startswith("This is not urgent.")


def test_one_number_is_one_conversation(assistant: Assistant) -> None:
    sms(assistant, "+15550000004", "she has a fever")
    reply = text_of(sms(assistant, "+15550000004", "and a dry mouth")[1])
    assert "Earlier you told me about: fever." in reply


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
def test_a_forged_or_missing_signature_is_refused_and_nothing_is_stored(
    assistant: Assistant, signature: str | None
) -> None:
    fields = twilio_fields("+15550000005", "he had a seizure")
    status, _ = assistant.post_form(PATH, fields, signature)
    assert status == 403
    assert stored(assistant, "+15550000005") == []


def test_a_signature_for_other_fields_is_refused(assistant: Assistant) -> None:
    fields = twilio_fields("+15550000006", "hello")
    signature = sign(assistant, fields)
    fields["Body"] = "he had a seizure"
    assert assistant.post_form(PATH, fields, signature)[0] == 403
    assert stored(assistant, "+15550000006") == []


def test_a_replayed_request_gets_the_same_reply_and_is_processed_once(assistant: Assistant) -> None:
    fields = twilio_fields("+15550000007", "throwing up all night", sid="SM" + "7" * 32)
    signature = sign(assistant, fields)
    first = assistant.post_form(PATH, fields, signature)
    again = assistant.post_form(PATH, fields, signature)
    assert first == again and first[0] == 200
    assert stored(assistant, "+15550000007") == [("throwing up all night", "answered")]


def test_an_empty_body_gets_a_safe_answer(assistant: Assistant) -> None:
    reply = text_of(sms(assistant, "+15550000008", "")[1])
    assert "In an emergency, call 911." in reply


def test_a_5000_character_body_is_read_and_answered_in_three_segments(assistant: Assistant) -> None:
    body = ("we had a quiet day at home and ate lunch. " * 120)[:4900] + " now he is throwing up"
    status, twiml = sms(assistant, "+15550000009", body)
    reply = text_of(twiml)
    assert status == 200
    assert reply.startswith("Call your doctor or care team right away")
    assert sms_text.segments(reply) <= 3


def test_stop_then_a_symptom_is_stored_but_not_answered_until_start(assistant: Assistant) -> None:
    phone = "+15550000010"
    assert "Reply START" in text_of(sms(assistant, phone, "STOP")[1])
    status, twiml = sms(assistant, phone, "he had a seizure")
    assert status == 200 and text_of(twiml) == ""
    assert stored(assistant, phone)[-1] == ("he had a seizure", "opted_out")
    with sqlite3.connect(assistant.db) as db:
        events = db.execute("select count(*) from events where sender_id = ?", (f"sms:{phone}",)).fetchone()[0]
    assert events > 0  # the care team still sees it
    assert "text me again" in text_of(sms(assistant, phone, "start")[1])
    assert text_of(sms(assistant, phone, "he had a seizure")[1]).startswith("Call emergency services now")


def test_help(assistant: Assistant) -> None:
    reply = text_of(sms(assistant, "+15550000011", "HELP")[1])
    assert "Reply STOP" in reply and "911" in reply


def test_fields_cut_differently_under_the_same_signature_are_refused(assistant: Assistant) -> None:
    """Twilio signs names and values run together: moving `To` into `MessageSid` keeps the signature
    valid and made a new MessageSid, so a captured text was processed again. MessageSid's format stops it."""
    phone, sid = "+15550000012", "SM" + "a" * 32
    captured = {"MessageSid": sid, "From": phone, "Body": "he had a seizure", "To": "+15550009999"}
    signature = sign(assistant, captured)
    assert assistant.post_form(PATH, captured, signature)[0] == 200
    shifted = {"MessageSid": sid + "To+15550009999", "From": phone, "Body": "he had a seizure"}
    assert sign(assistant, shifted) == signature  # the same signature fits
    status, answer = assistant.post_form(PATH, shifted, signature)
    assert status == 400 and "MessageSid" in answer
    assert stored(assistant, phone) == [("he had a seizure", "answered")]


@pytest.mark.parametrize(
    "change",
    [
        {"MessageSid": "SM" + "a" * 31},
        {"MessageSid": "XX" + "b" * 32},
        {"MessageSid": "SM" + "B" * 32},
        {"From": "+1555 0100"},
        {"From": "+15550100MessageSidSM"},
        {"From": ""},
    ],
)
def test_signed_fields_in_the_wrong_format_are_refused_and_not_stored(
    assistant: Assistant, change: dict[str, str]
) -> None:
    fields = {**twilio_fields("+15550000013", "she has a fever"), **change}
    status, answer = assistant.post_form(PATH, fields, sign(assistant, fields))
    assert status == 400 and "Twilio's format" in answer
    assert stored(assistant, "+15550000013") == []


def test_a_repeated_message_sid_is_refused(assistant: Assistant) -> None:
    url = f"http://localhost:{assistant.ports.rasa}{PATH}"
    pairs = [("MessageSid", "SM" + "d" * 32), ("MessageSid", "SM" + "e" * 32), ("From", "+15550000014"), ("Body", "hi")]
    form = RequestParameters({name: [v for k, v in pairs if k == name] for name, _ in pairs})
    signature = RequestValidator(SMS_AUTH_TOKEN).compute_signature(url, form)
    body = urllib.parse.urlencode(pairs).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert stored(assistant, "+15550000014") == []


def test_without_a_public_url_only_local_requests_are_taken_and_start_up_says_so(assistant: Assistant) -> None:
    assert not assistant.env.get("TRIAGE_SMS_PUBLIC_URL")
    assert sms(assistant, "+15550000016", "she has a fever")[0] == 200  # to localhost: taken
    fields = twilio_fields("+15550000015", "she has a fever")
    # The Host header a client chose, and a signature made for that URL: refused, not trusted.
    url = "http://triage.example.org/webhooks/sms/webhook"
    signature = RequestValidator(SMS_AUTH_TOKEN).compute_signature(url, fields)
    connection = http.client.HTTPConnection("localhost", assistant.ports.rasa, timeout=30)
    connection.request("POST", PATH, body=urllib.parse.urlencode(fields), headers={
        "Host": "triage.example.org", "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature})  # fmt: skip
    answer = connection.getresponse()
    assert answer.status == 503 and b"public URL" in answer.read()
    assert stored(assistant, "+15550000015") == []
    assert "TRIAGE_SMS_PUBLIC_URL is not set" in (assistant.logs / "rasa.log").read_text()
