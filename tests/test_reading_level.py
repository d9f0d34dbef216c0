"""Every sentence a patient can read is plain: English at reading grade 8 or lower (Flesch-Kincaid), Spanish
"normal" or easier on the INFLESZ scale (Szigriszt-Pazos 55 or more, the Spanish plain-language band),
both from textstat."""

from __future__ import annotations

import csv
import re

import pytest
import textstat
import yaml

from tests.conftest import ROOT

MAX_GRADE = 8.0
MIN_INFLESZ = 55.0
#: Spanish texts a patient reads (care-team reasons and the names of terms are not sentences).
_SPANISH_KEYS = ("response:", "explanation:", "level_action:", "temperature_advice:", "safety:other", "web:", "sms:")


def patient_texts() -> list[tuple[str, str]]:
    texts = []
    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    for name, variants in domain["responses"].items():
        for variant in variants:
            if not variant.get("condition"):  # the Spanish variations are measured from translations.csv
                texts.append((f"domain.yml {name}", re.sub(r"\{[a-z_]+\}", "911", variant["text"])))
    knowledge = ROOT / "knowledge"
    for row in csv.DictReader((knowledge / "side_effects.csv").open(encoding="utf-8")):
        texts.append((f"side_effects.csv {row['term']}", row["explanation"]))
    for row in csv.DictReader((knowledge / "levels.csv").open(encoding="utf-8")):
        texts.append((f"levels.csv {row['level']}", row["action"]))
    for row in csv.DictReader((knowledge / "temperature.csv").open(encoding="utf-8")):
        texts.append((f"temperature.csv {row['band']}", row["advice"]))
    return texts


@pytest.mark.parametrize(("where", "text"), patient_texts(), ids=lambda value: value[:60])
def test_patient_text_is_grade_8_or_lower(where: str, text: str) -> None:
    grade = textstat.flesch_kincaid_grade(text)
    assert grade <= MAX_GRADE, f"{where}: grade {grade}: {text}"


def spanish_texts() -> list[tuple[str, str]]:
    with (ROOT / "knowledge" / "translations.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (row["key"], re.sub(r"\{[a-z_]+\}", "911", row["spanish"]))
        for row in rows
        if row["key"].startswith(_SPANISH_KEYS) and len(row["spanish"].split()) >= 8
    ]


@pytest.mark.parametrize(("where", "text"), spanish_texts(), ids=lambda value: value[:60])
def test_spanish_patient_text_is_plain(where: str, text: str) -> None:
    textstat.set_lang("es")
    try:
        score = textstat.szigriszt_pazos(text)
    finally:
        textstat.set_lang("en_US")
    assert score >= MIN_INFLESZ, f"{where}: INFLESZ {score}: {text}"
