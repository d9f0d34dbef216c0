"""What an enrolment may hold, checked before anything is stored: each check returns the value as it
is kept, or raises PatientError naming the field and what to give instead (the app shows the sentence,
the command line prints it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import langcodes

from bot.careteam import phones

MAX_NAME = 200
MAX_MRN = 64


class PatientError(ValueError):
    """A refused enrolment or change; the message names the field and what to give instead."""


def check_name(name: str) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise PatientError("the name is empty: give the patient's full name")
    if len(cleaned) > MAX_NAME:
        raise PatientError(f"the name is longer than {MAX_NAME} characters")
    return cleaned


def check_mrn(mrn: str) -> str:
    cleaned = (mrn or "").strip()
    if not cleaned or len(cleaned) > MAX_MRN or not cleaned.isprintable() or any(c.isspace() for c in cleaned):
        raise PatientError(f"the medical record number must be 1 to {MAX_MRN} characters without spaces")
    return cleaned


def check_date(text: str | dt.date, what: str) -> dt.date:
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat((text or "").strip())
    except ValueError:
        raise PatientError(f"the {what} {str(text)[:40]!r} is not a date: write it as YYYY-MM-DD") from None


def check_birth_date(text: str | dt.date, today: dt.date | None = None) -> dt.date:
    born = check_date(text, "birth date")
    if born > (today or dt.date.today()) or born.year < 1900:
        raise PatientError(f"the birth date {born.isoformat()} is in the future or before 1900")
    return born


def check_language(text: str) -> str:
    tag = (text or "").strip() or "en"
    if len(tag) > 16 or not langcodes.tag_is_valid(tag):
        raise PatientError(f"the language {tag[:20]!r} is not a language tag: use e.g. en, es, fr-CA")
    return langcodes.standardize_tag(tag)


def check_phones(numbers: Iterable[str]) -> list[str]:
    checked: list[str] = []
    for number in numbers:
        try:
            value = phones.e164(number)
        except phones.PhoneError as error:
            raise PatientError(f"phone: {error}") from None
        if value not in checked:
            checked.append(value)
    if not checked:
        raise PatientError("give at least one phone number (the patient's or a caregiver's)")
    return checked
