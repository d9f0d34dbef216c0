"""The checks every patient channel applies to a message (bot/channels/inbound.py), on their own; the
channels applying them are tested against the real servers in test_bounded_input.py."""

from __future__ import annotations

import pytest

from bot.channels.inbound import MAX_MESSAGE_CHARS, NOT_TEXT, TOO_LONG, check_message, patient_text, readable


@pytest.mark.parametrize("value", [None, 5, 5.0, ["fever"], {"text": "fever"}, b"fever", True])
def test_a_message_must_be_a_string(value: object) -> None:
    assert check_message(value) == NOT_TEXT


def test_a_message_may_be_up_to_5000_characters() -> None:
    assert check_message("") is None
    assert check_message("x" * MAX_MESSAGE_CHARS) is None
    assert check_message("x" * (MAX_MESSAGE_CHARS + 1)) == TOO_LONG
    assert TOO_LONG.status == 413 and NOT_TEXT.status == 400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fever \ud800 x", "fever \ufffd x"),
        ("\udfff\ud83d", "\ufffd\ufffd"),
        ("fever\x00", "fever\ufffd"),
        ("fever 😀 é", "fever 😀 é"),  # whole characters stay as written
    ],
)
def test_characters_that_cannot_be_stored_are_replaced(text: str, expected: str) -> None:
    assert readable(text) == expected
    assert readable(text).encode("utf-8")


@pytest.mark.parametrize(
    "text", ['/greet{"symptom": "seizure"}', '  /greet{"symptom": "seizure"}', "/restart", "\n/stop"]
)
def test_text_that_rasa_would_read_as_a_command_is_kept_as_words(text: str) -> None:
    kept = patient_text(text)
    assert not kept.strip().startswith("/")  # what Rasa's RegexMessageHandler checks
    assert kept.endswith(text.strip())  # every character the patient wrote is still there


def test_ordinary_text_is_unchanged() -> None:
    assert patient_text("my son has a temp of 38.9 / 102 F") == "my son has a temp of 38.9 / 102 F"
