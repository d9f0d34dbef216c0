"""The catalogue against the monograph itself: every bullet and every Precautions warning sign is in
`knowledge/side_effects.csv`, verbatim, with a level that follows DESIGN.md's policy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.triage import catalogue
from bot.triage.catalogue import Catalogue, Entry
from bot.triage.result import Level

ROOT = Path(__file__).resolve().parents[1]
MONOGRAPH = ROOT / "knowledge" / "reference" / "blinatumomab-monograph.txt"
SHARED_MONOGRAPH = ROOT.parent / "shared" / "reference" / "blinatumomab-monograph.txt"

# DESIGN.md keeps `emergency` small: seizures, loss of consciousness, and breathing trouble described as severe.
EMERGENCY_TERMS = {"seizures", "loss of consciousness"}
EMERGENCY_WHEN_SEVERE = {"troubled breathing", "rapid, shallow breathing"}
WARNING_SYNDROMES = {
    "cytokine release": "CRS",
    "infection": "infection",
    "tumor lysis": "TLS",
    "pancreatitis": "pancreatitis",
}
LIST_AFTER = re.compile(
    r"(?:right away|immediately) if you (?:think you or your child are getting an infection or if you )?"
    r"(?:or your child )?have (?:any of the following symptoms: )?(?P<items>[^.]+)\."
)


@pytest.fixture(scope="module")
def monograph() -> str:
    return MONOGRAPH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return catalogue.load()


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start) : text.index(end, text.index(start))]


def _bullets(block: str) -> list[str]:
    return [line.strip().lstrip("•").strip().lower() for line in block.splitlines() if line.strip().startswith("•")]


def immediate_bullets(text: str) -> list[str]:
    return _bullets(_between(text, "Check with your doctor or nurse immediately", "Some side effects may occur"))


def minor_bullets(text: str) -> list[str]:
    return _bullets(_between(text, "Check with your health care professional if any", "Other side effects not listed"))


def warnings(text: str) -> list[tuple[str, list[str]]]:
    """(syndrome, signs) for each Precautions warning that says to call the doctor right away."""
    found = []
    for paragraph in _between(text, "Precautions while using blinatumomab", "Blinatumomab side effects").split("\n"):
        match = LIST_AFTER.search(paragraph)
        if not match:
            continue
        syndrome = next((code for key, code in WARNING_SYNDROMES.items() if key in paragraph.lower()), "neurotoxicity")
        signs = [re.sub(r"^(?:or |a )+", "", item.strip()) for item in match.group("items").split(", ")]
        if "getting an infection" in paragraph:
            signs.append("getting an infection")
        found.append((syndrome, signs))
    return found


def covering(cat: Catalogue, sign: str) -> list[Entry]:
    """Rows that name the sign, or (for "fever or chills") rows for each of its parts."""
    rows = [entry for entry in cat.entries if sign == entry.term or sign in entry.also_named]
    if rows or " or " not in sign:
        return rows
    parts = [covering(cat, part) for part in sign.split(" or ")]
    return [entry for part in parts for entry in part] if all(parts) else []


@pytest.mark.skipif(not SHARED_MONOGRAPH.is_file(), reason="no shared reference folder beside this checkout")
def test_the_project_copy_of_the_monograph_is_the_reference_text() -> None:
    assert MONOGRAPH.read_bytes() == SHARED_MONOGRAPH.read_bytes()


def test_the_monograph_parses_into_the_expected_lists(monograph: str) -> None:
    assert len(immediate_bullets(monograph)) == 52
    assert len(minor_bullets(monograph)) == 11
    assert [syndrome for syndrome, _ in warnings(monograph)] == [
        "CRS",
        "neurotoxicity",
        "infection",
        "TLS",
        "pancreatitis",
    ]


def test_every_immediate_bullet_is_a_row_at_call_now_or_above(monograph: str, cat: Catalogue) -> None:
    terms = {entry.term: entry for entry in cat.entries}
    for bullet in immediate_bullets(monograph):
        assert bullet in terms, f"monograph bullet missing from side_effects.csv: {bullet!r}"
        assert terms[bullet].level.rank >= Level.CALL_NOW.rank, bullet
        assert any(s.name.startswith("check with your doctor immediately") for s in terms[bullet].sections)


def test_irritability_is_one_row_naming_both_lists(cat: Catalogue) -> None:
    assert [entry.term for entry in cat.entries].count("irritability") == 1
    assert len(cat.entry("irritability").sections) == 2


def test_every_precautions_sign_is_covered_at_call_now_with_its_syndrome(monograph: str, cat: Catalogue) -> None:
    for syndrome, signs in warnings(monograph):
        for sign in signs:
            rows = covering(cat, sign)
            assert rows, f"Precautions sign missing from side_effects.csv (term or also_named): {sign!r}"
            for entry in rows:
                assert entry.level.rank >= Level.CALL_NOW.rank, f"{entry.term}: Precautions win"
                assert syndrome in entry.syndromes, f"{entry.term} is named in the {syndrome} warning"


def test_minor_bullets_are_mention_unless_precautions_name_them(monograph: str, cat: Catalogue) -> None:
    for bullet in minor_bullets(monograph):
        entry = cat.entry(bullet)
        if entry.syndromes:
            assert entry.level == Level.CALL_NOW, f"{bullet}: named in Precautions, so call_now"
            assert entry.also_named, f"{bullet}: say which Precautions wording names it"
        else:
            assert entry.level == Level.MENTION, f"{bullet}: only in the minor list, so mention"


def test_precautions_named_minor_bullets_are_exactly_the_design_list(cat: Catalogue) -> None:
    # DESIGN.md, policy 1: muscle/joint pain, change in urination and constipation are Precautions signs.
    raised = {e.term for e in cat.entries if e.level == Level.CALL_NOW and e.sections[0].floor == Level.MENTION}
    assert raised == {
        "bone, joint, or muscle pain",
        "change in urination",
        "difficulty having a bowel movement",
        "muscle pain or cramps",
    }


def test_emergency_is_kept_small(cat: Catalogue) -> None:
    assert {e.term for e in cat.entries if e.level == Level.EMERGENCY} == EMERGENCY_TERMS
    assert {e.term for e in cat.entries if e.severe_level == Level.EMERGENCY and e.level != Level.EMERGENCY} == (
        EMERGENCY_WHEN_SEVERE
    )
    for term in EMERGENCY_WHEN_SEVERE:
        assert cat.entry(term).severe_synonyms, f"{term}: severe phrasings ('can't breathe') are needed"


def test_the_precautions_signs_that_are_not_bullets_have_rows(cat: Catalogue) -> None:
    for sign in ("nausea", "fainting", "lightheadedness", "loss of balance", "loss of consciousness",
                 "disorientation", "slurred speech"):  # fmt: skip
        assert cat.entry(sign).level.rank >= Level.CALL_NOW.rank


def test_every_row_has_many_lay_synonyms(cat: Catalogue) -> None:
    thin = [entry.term for entry in cat.entries if len(entry.synonyms) < 10]
    assert not thin, f"rows with fewer than ten synonyms: {thin}"
