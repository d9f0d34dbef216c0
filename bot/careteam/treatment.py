"""Where a patient is in treatment on a given day, from the start dates of their blinatumomab cycles.

The monograph: "given every day for 4 weeks followed by a 2-week treatment free-interval. This is one
treatment cycle", and "Hospitalization is recommended for the first 3 days of the first treatment
cycle and for the first 2 days of the second cycle" (the days cytokine release syndrome and
neurological toxicity are most likely to start). The care team sees both on the escalation page.

The current cycle is the one with the latest start on or before the day; cycles are numbered by their
start dates in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

INFUSION_DAYS = 28
CYCLE_DAYS = 42
#: Days of each cycle (by number) in hospital, as the monograph recommends.
HOSPITAL_DAYS = {1: 3, 2: 2}


@dataclass(frozen=True)
class Position:
    cycle: int
    day: int  # 1 on the cycle's start date

    @property
    def in_hospital_window(self) -> bool:
        return self.day <= HOSPITAL_DAYS.get(self.cycle, 0)

    @property
    def words(self) -> str:
        if self.day <= INFUSION_DAYS:
            return f"cycle {self.cycle}, day {self.day}"
        if self.day <= CYCLE_DAYS:
            return f"cycle {self.cycle}, day {self.day} (treatment-free interval)"
        return f"after cycle {self.cycle} (day {self.day} since it started)"

    @property
    def hospital_advice(self) -> str:
        """What the monograph recommends for this day, or "" outside those days."""
        if not self.in_hospital_window:
            return ""
        days = HOSPITAL_DAYS[self.cycle]
        ordinal = {1: "first", 2: "second"}[self.cycle]
        return (
            f"The monograph recommends hospital care for the first {days} days of the {ordinal} cycle: "
            f"this patient is on day {self.day} of cycle {self.cycle}."
        )


def position(starts: Iterable[dt.date], today: dt.date) -> Position | None:
    """The cycle and day on `today`, or None before the first cycle (or with no cycle recorded)."""
    ordered = sorted(set(starts))
    started = [start for start in ordered if start <= today]
    if not started:
        return None
    return Position(cycle=len(started), day=(today - started[-1]).days + 1)
