"""SMS-shaped replies: GSM-7 where possible, three segments at most, the first instruction kept."""

from __future__ import annotations

from bot.channels.sms_text import compose, is_gsm7, segments


def test_the_degree_sign_and_typographic_quotes_become_gsm7() -> None:
    text = compose(["This is a fever (38.0 °C / 100.4 °F or higher).", "It’s “fine” – really…"])
    assert is_gsm7(text)
    assert "38.0 C / 100.4 F" in text


def test_long_replies_are_cut_to_three_segments_keeping_the_first_instruction() -> None:
    headline = "Call emergency services now: 911."
    text = compose([headline, "word " * 200, "never reached"])
    assert text.startswith(headline)
    assert segments(text) <= 3
    assert text.endswith("...")
    assert "never reached" not in text


def test_buttons_become_numbered_choices() -> None:
    assert compose(["Are you better?"], ["Yes", "No"]).endswith("Reply 1 for Yes. Reply 2 for No.")


def test_a_reply_that_fits_is_left_whole() -> None:
    assert compose(["One.", "Two."]) == "One.\nTwo."
