"""The Spanish texts: one file (knowledge/translations.csv) keeps each English text beside its Spanish
translation; the domain's Spanish replies are written from it; placeholders and numbers survive."""

from __future__ import annotations

import csv
import re

from bot import wording
from bot.channels import sms_text
from bot.triage.knowledge import knowledge_dir
from bot.triage.result import Level
from tools import translations

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def rows() -> list[dict[str, str]]:
    with (knowledge_dir() / "translations.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_text_has_its_spanish_with_the_same_placeholders_and_numbers() -> None:
    for row in rows():
        assert row["spanish"].strip(), row["key"]
        assert sorted(_PLACEHOLDER.findall(row["english"])) == sorted(_PLACEHOLDER.findall(row["spanish"])), row
        english_numbers = {n.replace(",", ".") for n in _NUMBER.findall(row["english"])}
        spanish_numbers = {n.replace(",", ".") for n in _NUMBER.findall(row["spanish"])}
        assert english_numbers <= spanish_numbers, row["key"]


def test_the_domain_has_the_spanish_of_every_reply_and_translates_its_current_english() -> None:
    assert translations.main([]) == 0
    domain = translations.DOMAIN.read_text(encoding="utf-8")
    responses = translations.spanish_responses()
    assert not translations.stale_english(domain, responses)
    assert translations.rewritten(domain, responses) == domain


def test_a_changed_english_reply_is_caught(tmp_path: object) -> None:
    domain = translations.DOMAIN.read_text(encoding="utf-8").replace("Take care.", "Bye now.", 1)
    assert translations.stale_english(domain, translations.spanish_responses())


def test_texts_outside_the_domain_are_said_in_spanish() -> None:
    assert wording.term("fever", "es") == "fiebre"
    assert wording.action(Level.CALL_NOW, "Call your doctor or care team right away.", "es").startswith("Llame")
    assert wording.term("fever", "en") == "fever"
    # A text the file does not translate as written stays English rather than saying something else.
    assert wording.say("term:fever", "temperature", "es") == "temperature"
    assert wording.care_team_suffix(" at +1 555 0100", "es") == " al +1 555 0100"


def test_spanish_sms_keeps_gsm7_and_three_segments() -> None:
    reply = wording.action(Level.CALL_NOW, "Call your doctor or care team right away.", "es")
    text = sms_text.compose(
        [reply, "- Fiebre: " + "Esto puede ser una señal del síndrome de liberación de citocinas. " * 6]
    )
    assert sms_text.is_gsm7(text)
    assert sms_text.segments(text) <= 3
    assert "inmediato" in text and "señal" in text  # ñ is GSM-7; á, í, ó, ú are written without accents
    assert "á" not in text and "ó" not in text
