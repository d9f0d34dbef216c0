"""Phone numbers of enrolled patients and their caregivers: validated with `phonenumbers` and kept in
E.164 (`+16175550123`), the form carriers report a texting number in, so that a text from an enrolled
number finds its patient by plain equality.

A number must be one `phonenumbers` knows to be in use in its country, not only of the right length:
a number the care team cannot call back is worse than none, because the page would offer it. Numbers
without a country code are read in `TRIAGE_PHONE_REGION` (default US).
"""

from __future__ import annotations

import os

import phonenumbers

DEFAULT_REGION = "US"


class PhoneError(ValueError):
    """A number that cannot be stored; the message quotes it and says how to write it."""


def region() -> str:
    return os.environ.get("TRIAGE_PHONE_REGION", "").strip().upper() or DEFAULT_REGION


def e164(text: str, default_region: str | None = None) -> str:
    """`text` as an E.164 number, or PhoneError saying what is wrong with it."""
    raw = (text or "").strip()
    if not raw:
        raise PhoneError("a phone number is empty: give it as +<country code><number>, e.g. +16175550123")
    shown = raw[:40]
    try:
        number = phonenumbers.parse(raw, default_region or region())
    except phonenumbers.NumberParseException as error:
        if error.error_type == phonenumbers.NumberParseException.NOT_A_NUMBER:
            problem = "is not a phone number"
        elif error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            problem = "has no country code we know"
        else:
            problem = "has too many or too few digits"
        raise PhoneError(f"{shown!r} {problem}: give it as +<country code><number>, e.g. +16175550123") from None
    if not phonenumbers.is_possible_number(number):
        raise PhoneError(f"{shown!r} has too many or too few digits for country code +{number.country_code}")
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(
            f"{shown!r} is not a number in use in country +{number.country_code} (check the area code and digits)"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def sender_number(sender_id: str) -> str | None:
    """The E.164 number of an SMS conversation key (`sms:+16175550123`), or None for other channels and
    for numbers that cannot be read (a short code, a malformed sender)."""
    if not sender_id.startswith("sms:"):
        return None
    try:
        return e164(sender_id.removeprefix("sms:"), DEFAULT_REGION)
    except PhoneError:
        return None


def display(number: str) -> str:
    """A stored E.164 number in the international format people read (`+1 617-555-0123`)."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
