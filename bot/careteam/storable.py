"""What an escalation carries, made storable on every database the service supports, so that nothing a
message holds can keep it off the care team's queue.

A patient's text reaches the store from any channel, and the channels cannot all be trusted to have
cleaned it: a lone UTF-16 surrogate (`fever \\ud800 x`) cannot be encoded as UTF-8, so SQLite and
PostgreSQL both refuse it; PostgreSQL refuses NUL in text; a sender or message id longer than its
column is refused by PostgreSQL. Each of those once sent an escalation to the spool and then set it
aside, off the queue. Here:

- text keeps every character that can be stored; surrogate pairs are joined into the character they
  encode, a lone surrogate or a NUL becomes U+FFFD (the replacement character, so the reader sees that
  something was there);
- a value longer than its column is cut and ends with a digest of the whole, so two different long ids
  stay different and the same id always maps to the same stored value (a message is still recorded
  once);
- a triage object is copied with its strings cleaned and anything JSON cannot hold written as text;
- a time without a zone is taken as UTC; a level the store does not know is `unclear` (a person reads
  it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from bot.triage.result import Level

REPLACEMENT = "\ufffd"
#: Deeper nesting than a triage object ever has is written as text rather than walked.
MAX_DEPTH = 20


def text(value: object) -> str:
    """`value` as text every database takes, the patient's characters kept where they can be."""
    if value is None:
        return ""
    string = value if isinstance(value, str) else str(value)
    if string.isascii() and "\x00" not in string:
        return string
    # UTF-16 with "surrogatepass" joins a valid pair back into its character; decoding with "replace"
    # turns what is left (lone surrogates) into U+FFFD.
    string = string.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return string.replace("\x00", REPLACEMENT)


def bounded(value: object, size: int) -> str:
    """`text(value)` in at most `size` characters: cut, with a digest of the whole at the end."""
    string = text(value)
    if len(string) <= size:
        return string
    digest = hashlib.sha256(string.encode("utf-8")).hexdigest()[: min(16, size // 2)]
    return f"{string[: max(size - len(digest) - 1, 0)]}~{digest}"[:size]


def data(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with every string made storable."""
    if isinstance(value, str):
        return text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else text(value)
    if depth >= MAX_DEPTH:
        return text(repr(value))
    if isinstance(value, Mapping):
        return {text(key): data(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [data(item, depth + 1) for item in value]
    return text(value)


def moment(value: object) -> dt.datetime:
    """An aware UTC time: a naive one is taken as UTC, an ISO string is read, anything else is now."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, dt.datetime):
        return dt.datetime.now(dt.timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def level(value: object) -> Level:
    """The level named by `value`; `unclear` when it names none (a person then reads the message)."""
    try:
        return Level(value)
    except (ValueError, TypeError):
        return Level.UNCLEAR
