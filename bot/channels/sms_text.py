"""Turns the assistant's replies into one SMS: plain GSM-7 text where possible, at most three segments,
the most important instruction first (later messages are dropped or shortened, never the first).
"""

from __future__ import annotations

import unicodedata

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import smsutil

MAX_SEGMENTS = 3

#: Characters outside GSM-7 that have a plain equivalent; anything else keeps the message in UCS-2.
_PLAIN = str.maketrans(
    {
        "°": " deg ",
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "•": "-",
        "…": "...",
        "\u00a0": " ",
    }
)


def is_gsm7(text: str) -> bool:
    try:
        text.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True


def plain(text: str) -> str:
    converted = " ".join(text.translate(_PLAIN).replace(" deg C", " C").replace(" deg F", " F").split(" "))
    converted = "".join(map(_gsm_letter, converted))
    return "\n".join(" ".join(line.split()) for line in converted.splitlines())


def _gsm_letter(character: str) -> str:
    """A letter GSM-7 lacks, written without its accent: Spanish "á í ó ú" (GSM-7 has é, ñ, ü, ¿ and ¡).
    Accent folding was chosen over UCS-2: UCS-2 segments hold 70 characters instead of 160, so three
    segments could not carry a Spanish instruction and its reason; Spanish text messages are commonly
    written without accents, and no Spanish word of an instruction changes meaning without them."""
    if character.isascii() or is_gsm7(character):
        return character
    base = unicodedata.normalize("NFD", character)[0]
    return base if base.isascii() and base.isalpha() else character


def segments(text: str) -> int:
    return len(smsutil.split(text).parts) if text else 0


def compose(messages: list[str], buttons: list[str] | None = None, max_segments: int = MAX_SEGMENTS) -> str:
    """One SMS from the bot's messages in order; buttons become numbered choices."""
    parts = [plain(message) for message in messages if message.strip()]
    if buttons:
        parts.append(" ".join(f"Reply {n} for {plain(title)}." for n, title in enumerate(buttons, start=1)))
    text = ""
    for part in parts:
        candidate = f"{text}\n{part}" if text else part
        if segments(candidate) <= max_segments:
            text = candidate
            continue
        room = _shorten(text, part, max_segments)
        text = room
        break
    return text


def _shorten(text: str, part: str, max_segments: int) -> str:
    """Adds as much of `part` as fits, cut at a word, with an ellipsis; the first part is always kept."""
    words = part.split(" ")
    while words:
        words.pop()
        shortened = " ".join(words).rstrip(",;:") + "..."
        candidate = f"{text}\n{shortened}" if text else shortened
        if words and segments(candidate) <= max_segments:
            return candidate
    return text
