"""The triage core: maps a patient's message to the monograph's side-effect catalogue and decides how
urgently to act. Plain Python over spaCy and medspaCy; no Rasa, HTTP or database.

    >>> from bot.triage import default_triager
    >>> default_triager().triage("throwing up all morning").level
    <Level.CALL_NOW: 'call_now'>

Importing this package does not import spaCy: the engine loads on first use, so that an entry point
can call `bot.block_tensorflow()` first (see there).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from bot.triage.result import Level, Symptom, Temperature, Triage

if TYPE_CHECKING:
    from bot.triage.triager import Triager

__all__ = ["Level", "Symptom", "Temperature", "Triage", "Triager", "default_triager"]


def __getattr__(name: str) -> Any:
    if name == "Triager":
        from bot.triage.triager import Triager

        return Triager
    raise AttributeError(f"module 'bot.triage' has no attribute {name!r}")


@lru_cache(maxsize=1)
def default_triager() -> Triager:
    """The process-wide triager over the project's knowledge folder (built once, on first use)."""
    from bot.triage.triager import Triager

    return Triager()
