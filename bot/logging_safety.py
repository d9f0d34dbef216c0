"""Log records that cannot forge other records: every line of a log starts a real record.

Patients choose their own sender ids and words, and both reach log messages (ours: "rate limit
reached (sender %s)"; Rasa's: f-strings with the conversation id). A sender id such as
"p1\\n2030-01-01 12:00:00 ERROR care team: escalation 7 resolved" would otherwise write a second,
forged line into the log that an investigator reads as true. So every record is made safe when it is
created, whichever handler or format prints it later:

- the message is formatted once and its control characters (CR, LF, NUL, escape sequences, the
  Unicode line and paragraph separators, bidirectional overrides and other format characters) are
  written as visible escapes (`\\n`, `\\x1b`, `\\u202e`);
- a traceback or stack keeps its lines, but each is indented and escaped the same way, so a line an
  exception's message smuggles in cannot start at the left margin where records start.

`install()` puts this in the process's log record factory (logging.setLogRecordFactory). The `bot`
package calls it when it is imported, so every server that loads any part of the product gets it: the
Rasa server (channels, NLU component, tracker store), the action server (bot.actions) and the
care-team app. It is idempotent.
"""

from __future__ import annotations

import logging
import traceback
import unicodedata
from collections.abc import Callable
from typing import Any

#: Unicode categories that could end a line or hide what a line says: C0 and C1 controls (CR, LF, NUL,
#: ESC, NEL ...), the line and paragraph separators, and format characters (bidirectional overrides,
#: zero-width characters).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_INDENT = "    "
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    if character in _SHORT:
        return _SHORT[character]
    point = ord(character)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def visible(text: str) -> str:
    """`text` on one line, its control and format characters written as escapes (`\\n`, `\\x00`, `\\u200b`)."""
    if text.isprintable():  # the common case; also False for spaces other than " " and unassigned points
        return text
    return "".join(_escape(c) if unicodedata.category(c) in UNSAFE_CATEGORIES else c for c in text)


def _block(text: str) -> str:
    """A traceback or stack: its own lines kept, each indented and escaped."""
    return "\n".join(_INDENT + visible(line) for line in text.splitlines())


_previous: Callable[..., logging.LogRecord] | None = None


def _safe_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous is not None  # set by install() before this factory is used
    record = _previous(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return record
    record.msg = visible(message)
    record.args = ()  # already formatted: a "%" in the escaped text must not be read as a placeholder
    if record.exc_info and not record.exc_text:
        record.exc_text = _block("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = _block(record.stack_info)
    return record


def install() -> None:
    """Makes every log record created from now on in this process safe (see the module docstring)."""
    global _previous
    current = logging.getLogRecordFactory()
    if current is _safe_record:
        return
    _previous = current
    logging.setLogRecordFactory(_safe_record)


def installed() -> bool:
    return logging.getLogRecordFactory() is _safe_record
