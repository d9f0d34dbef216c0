"""The answer of last resort. If the dialogue produced nothing for a patient's message (action server
down, an exception anywhere), the channel still answers: it runs the triage core in-process and says
when to call. These sentences live here, not in the domain, because they must work when the dialogue
machinery (which reads the domain) has failed.
"""

from __future__ import annotations

from typing import Any

from bot.settings import contacts
from bot.triage import Level, default_triager

_APOLOGY = "Sorry, I could not finish checking your message."


def safe_reply(text: str) -> tuple[str, dict[str, Any]]:
    """The safe text for `text`, and the triage object it was based on."""
    numbers = contacts()
    try:
        triage = default_triager().triage(text)
        level, triage_object = triage.level, triage.to_dict()
    except Exception:  # the core failed too: assume the worst that still fits a message
        level, triage_object = Level.UNCLEAR, {"level": Level.UNCLEAR.value, "symptoms": [], "temperature": None}
    care_team = f"call your care team right away{numbers.care_team_phone_suffix}"
    if level == Level.EMERGENCY:
        text_out = f"Call emergency services now: {numbers.emergency_number}. {_APOLOGY}"
    elif level == Level.CALL_NOW:
        terms = ", ".join(s["term"] for s in triage_object["symptoms"])
        text_out = f"{care_team[0].upper()}{care_team[1:]} about: {terms}. {_APOLOGY}"
    else:
        text_out = (
            f"{_APOLOGY} If you feel unwell, {care_team}. "
            f"If it is severe, call emergency services: {numbers.emergency_number}."
        )
    return text_out, {"triage": {**triage_object, "safety_net": True}}
