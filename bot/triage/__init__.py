"""The triage core: maps a patient's message to the monograph's side-effect catalogue and decides how
urgently to act. Plain Python over spaCy and medspaCy; no Rasa, HTTP or database.

    >>> from bot.triage import default_triager
    >>> default_triager().triage("throwing up all morning").level
    <Level.CALL_NOW: 'call_now'>
"""

from __future__ import annotations

import sys

# thinc imports TensorFlow whenever it is installed (Rasa brings it): about 4 s and 400 MB that the triage
# core never uses. Blocking the import keeps start-up near 1 s. A Rasa process has imported TensorFlow
# before it loads this package, so the block only applies where nothing has imported it yet.
if "tensorflow" not in sys.modules:
    sys.modules["tensorflow"] = None  # type: ignore[assignment]

from functools import lru_cache

from bot.triage.result import Level, Symptom, Temperature, Triage
from bot.triage.triager import Triager

__all__ = ["Level", "Symptom", "Temperature", "Triage", "Triager", "default_triager"]


@lru_cache(maxsize=1)
def default_triager() -> Triager:
    """The process-wide triager over the project's knowledge folder (built once, on first use)."""
    return Triager()
