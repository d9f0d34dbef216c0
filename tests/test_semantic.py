"""The semantic matcher beside the lexicon (bot/triage/semantic.py), the complaint net and the cues that keep
questions, other people, quotations and worries from raising alarms."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.triage.embedding import FILES, EncoderError, SentenceEncoder, default_encoder, resource_folder
from bot.triage.result import Level
from bot.triage.rules import Finding, Policy, Resemblance
from bot.triage.triager import Triager

# Vectors of the encoder as it was checked (first six of 512 dimensions): a changed model file fails here.
KNOWN_VECTORS = {
    "my son has a fever": [0.01119, -0.00255, -0.01882, 0.04299, -0.08271, 0.04962],
    "I feel sick": [0.08535, -0.02666, 0.0417, 0.03065, -0.09816, 0.00509],
    "mi hijo tiene fiebre": [-0.03795, -0.01735, 0.02711, 0.05526, -0.07632, 0.0239],
}


@pytest.fixture(scope="module")
def lexicon_only() -> Triager:
    return Triager(semantic_matching=False)


def test_the_encoder_gives_the_vectors_it_was_checked_with() -> None:
    vectors = default_encoder().encode(list(KNOWN_VECTORS))
    for row, expected in zip(vectors, KNOWN_VECTORS.values(), strict=True):
        assert np.allclose(row[:6], expected, atol=2e-4)
        assert abs(float(np.linalg.norm(row)) - 1.0) < 1e-3
    assert float(vectors[0] @ vectors[2]) == pytest.approx(0.851, abs=0.005)  # English and Spanish fever


def test_a_changed_model_file_refuses_to_load(tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(resource_folder() / name, tmp_path / name)
    with (tmp_path / "weights.npz").open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EncoderError, match="SHA-256"):
        SentenceEncoder(tmp_path)


def test_a_missing_model_file_refuses_to_load(tmp_path: Path) -> None:
    shutil.copy(resource_folder() / "sp.model", tmp_path / "sp.model")
    with pytest.raises(EncoderError, match=r"weights\.npz"):
        SentenceEncoder(tmp_path)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("drained", "unusual tiredness or weakness"),
        ("words would not form", "problems with speech or speaking"),
        ("not been able to poo for days", "difficulty having a bowel movement"),
        ("heart is beating really slowly", "slow or fast heartbeat"),
        ("I don't feel like eating much", "decreased appetite"),
    ],
)
def test_phrasings_the_lexicon_lacks_are_found_by_meaning_with_their_evidence(
    triager: Triager, lexicon_only: Triager, text: str, term: str
) -> None:
    assert lexicon_only.triage(text).level in (Level.NONE, Level.UNCLEAR)
    result = triager.triage(text)
    found = {s.term: s for s in result.symptoms}
    assert term in found, result.reason
    symptom = found[term]
    assert symptom.method == "semantic"
    assert 0.6 <= symptom.score <= 1.0
    assert "close in meaning to '" in symptom.reason and "matches need 0.60" in symptom.reason


def test_the_lexicon_stays_first(triager: Triager) -> None:
    result = triager.triage("I threw up twice and words would not form")
    methods = {s.term: s.method for s in result.symptoms}
    assert methods["vomiting"] == "lemma"
    assert methods["problems with speech or speaking"] == "semantic"


@pytest.mark.parametrize(
    "text",
    ["no trouble getting my words out", "she isn't confused at all", "the rash on his arm has cleared up",
     "what if he starts feeling drained"],
)  # fmt: skip
def test_context_rules_apply_to_matches_by_meaning(triager: Triager, text: str) -> None:
    assert triager.triage(text).level == Level.NONE, triager.triage(text).reason


@pytest.mark.parametrize("text", ["no energy whatsoever", "I can't sleep at all", "didn't sleep a wink last night"])
def test_a_negation_that_is_the_complaint_itself_counts(triager: Triager, text: str) -> None:
    assert triager.triage(text).level.rank >= Level.MENTION.rank, triager.triage(text).reason


@pytest.mark.parametrize(("score", "level"), [(0.65, Level.CALL_NOW), (0.75, Level.EMERGENCY)])
def test_an_emergency_by_meaning_alone_needs_a_closer_match(triager: Triager, score: float, level: Level) -> None:
    policy = Policy(triager.catalogue, triager.temperature_terms)
    finding = Finding(
        entry=triager.catalogue.entry("seizures"),
        phrase="went rigid",
        severe_phrase=False,
        span="he went all stiff",
        start=0,
        end=17,
        cues=(),
        corrections=(),
        resemblance=Resemblance("went rigid", score, 0.60, 0.70),
    )
    result = policy.decide([finding], [], None, lambda: True)
    assert result.level == level
    assert ("below the 0.70 an emergency needs" in result.symptoms[0].reason) == (level == Level.CALL_NOW)


@pytest.mark.parametrize(
    "text",
    [
        "could this medicine make me tired?",
        "does it usually make people dizzy?",
        "should I worry if my ankles swell?",
        "my friend gets migraines",
        "my neighbour's kid has a rash",
        "the leaflet mentions chest pain",
        "worried he might get a fever",
        "scared she'll get an infection at school",
        "my eyes aren't yellow",
        "my tummy doesn't hurt",
        "can I get a flu shot",
        "is it ok for her to have the flu jab?",
    ],
)
def test_questions_other_people_quotes_and_worries_are_not_reports(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.NONE, result.reason


def test_a_question_keeps_the_symptom_it_asks_about_for_the_answer(triager: Triager) -> None:
    result = triager.triage("could this medicine make me tired?")
    assert [(s.term, s.context) for s in result.excluded] == [("unusual tiredness or weakness", ("asked about",))]


@pytest.mark.parametrize(
    "text",
    ["my son has a headache", "my ankles are swollen, is that the drug?", "he has the flu and wants his flu jab",
     "my friend says I look yellow"],
)  # fmt: skip
def test_the_patient_and_their_caregiver_still_count(triager: Triager, text: str) -> None:
    assert triager.triage(text).level == Level.CALL_NOW, triager.triage(text).reason


@pytest.mark.parametrize(
    "text",
    ["my ingrown toenail is really sore", "I've been sleeping loads more than usual", "my skin looks a funny colour",
     "he keeps going to the loo"],
)  # fmt: skip
def test_a_complaint_about_the_body_or_daily_life_is_never_none(triager: Triager, text: str) -> None:
    assert triager.triage(text).level != Level.NONE, triager.triage(text).reason


@pytest.mark.parametrize(
    "text",
    ["good morning! he slept well and ate all his breakfast", "feeling great today actually", "can he eat grapefruit?",
     "we are heading to the clinic now for the bag change", "thanks so much, that helps", "hello, is anyone there?"],
)  # fmt: skip
def test_everyday_words_said_well_or_asked_about_are_not_complaints(triager: Triager, text: str) -> None:
    assert triager.triage(text).level == Level.NONE, triager.triage(text).reason


def test_a_pasted_page_compares_a_bounded_number_of_clauses(triager: Triager) -> None:
    text = "I am feeling drained, " * 400 + "and he had a seizure."
    result = triager.triage(text)
    assert result.level == Level.EMERGENCY
