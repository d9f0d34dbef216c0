"""Every sentence a patient can read is at reading grade 8 or lower (Flesch-Kincaid, textstat)."""

from __future__ import annotations

import csv
import re

import pytest
import textstat
import yaml

from tests.conftest import ROOT

MAX_GRADE = 8.0


def patient_texts() -> list[tuple[str, str]]:
    texts = []
    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    for name, variants in domain["responses"].items():
        for variant in variants:
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
