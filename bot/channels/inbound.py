"""What every patient channel accepts from a client, checked the same way on REST, socket.io and SMS,
before anything reaches the dialogue:

- a message is a string of at most `MAX_MESSAGE_CHARS` characters (a patient message is not a book;
  one triage of it then takes milliseconds, so no patient waits on another's);
- characters that cannot be stored or read (lone UTF-16 surrogates, which JSON allows and UTF-8 does
  not; NUL, which PostgreSQL text refuses) become U+FFFD, so the NLU and the stores never see them;
- patient text is never a command: Rasa reads a message starting with "/" as `/intent{entities}` and
  skips the NLU (`/greet{"symptom": "seizure"}` became a triage with no escalation). Such a message
  gets an invisible U+200B in front, so Rasa reads it as words: the triage core ignores invisible
  characters, and the care team still sees every character the patient wrote;
- client metadata is dropped: no component reads it, and Rasa stores it with the message and sends
  it to the action server with every later turn, so a megabyte of it broke the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longest message a channel passes on, in characters. SMS cuts a longer body (carriers join at most
#: about 1,600 characters); REST answers 413 and socket.io an error reply that says what to do.
MAX_MESSAGE_CHARS = 5000
#: Rasa's `INTENT_MESSAGE_PREFIX`, after the whitespace Rasa strips from every message.
COMMAND_PREFIX = "/"
_NOT_A_COMMAND = "\u200b"
_UNREADABLE = re.compile("[\ud800-\udfff\x00]")


@dataclass(frozen=True)
class Problem:
    """Why a message was not accepted: an HTTP status and a sentence for the client."""

    status: int
    error: str


TOO_LONG = Problem(413, f'"message" is longer than {MAX_MESSAGE_CHARS} characters: send it in shorter parts')
NOT_TEXT = Problem(400, '"message" must be a string')


def check_message(value: object) -> Problem | None:
    """None when `value` can be a patient message, else why not."""
    if not isinstance(value, str):
        return NOT_TEXT
    if len(value) > MAX_MESSAGE_CHARS:
        return TOO_LONG
    return None


def readable(text: str) -> str:
    """`text` with every character that cannot be stored or read replaced by U+FFFD."""
    return _UNREADABLE.sub("\ufffd", text)


def patient_text(text: str) -> str:
    """The text the dialogue gets for a patient's message: readable, and never read as a command."""
    text = readable(text).strip()
    if text.startswith(COMMAND_PREFIX):
        return _NOT_A_COMMAND + text
    return text
