"""Blinatumomab symptom-triage assistant."""

from __future__ import annotations

import sys

from bot import logging_safety

# Every server loads some part of `bot` (the Rasa server its channels and NLU component, the action
# server bot.actions, the care-team app), so this makes every log record of theirs one line that a
# patient's sender id or words cannot break into forged records (bot/logging_safety.py).
logging_safety.install()


def block_tensorflow() -> None:
    """Keeps TensorFlow out of processes that do not need it (the triage CLI, the action server, the
    core's benchmark). thinc imports TensorFlow whenever it is installed, and Rasa installs it: about
    4 s and 400 MB at start-up that the triage core never uses. Call before importing spaCy. A process
    that has already imported TensorFlow (the Rasa server) is left alone."""
    if "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
