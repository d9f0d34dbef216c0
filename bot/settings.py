"""Deployment settings read from the environment, with the defaults `make run` uses.

| variable | default | what |
|---|---|---|
| `TRIAGE_EMERGENCY_NUMBER` | `911` | the emergency number named in emergency advice |
| `TRIAGE_CARE_TEAM_PHONE` | empty | the care team's phone; when empty, replies say "your care team" without a number |
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Contacts:
    emergency_number: str
    care_team_phone: str

    @property
    def care_team_phone_suffix(self) -> str:
        """ " at +1 555 0100" when a number is configured, else nothing: the reply stays a sentence."""
        return f" at {self.care_team_phone}" if self.care_team_phone else ""


def contacts() -> Contacts:
    return Contacts(
        emergency_number=os.environ.get("TRIAGE_EMERGENCY_NUMBER", "").strip() or "911",
        care_team_phone=os.environ.get("TRIAGE_CARE_TEAM_PHONE", "").strip(),
    )
