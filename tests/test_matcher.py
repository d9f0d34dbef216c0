"""Lay words, SMS spelling, typos and grammar map to the monograph's terms; short words are not
over-corrected; overlapping matches resolve to the longest; several symptoms are all found."""

from __future__ import annotations

import pytest

from bot.triage.triager import Triager


def terms(triager: Triager, text: str) -> set[str]:
    return {symptom.term for symptom in triager.triage(text).symptoms}


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("she's been puking since lunch", "vomiting"),
        ("threw up twice", "vomiting"),
        ("he's burning up", "fever"),
        ("I have pins and needles in my fingers", "tingling of the hands or feet"),
        ("can't catch my breath", "troubled breathing"),
        ("hot and cold all night", "chills"),
        ("my tummy really hurts", "stomach pain"),
        ("it hurts when I pee", "painful or difficult urination"),
        ("my wee is really dark", "darkened urine"),
        ("she has the runs", "diarrhea"),
        ("he is having a fit", "seizures"),
        ("everything looks blurry", "blurred vision"),
        ("her hands are puffy", "bloating or swelling of the face, arms, hands, lower legs, or feet"),
        ("so weak I can't get out of bed", "unusual tiredness or weakness"),
        ("my gums keep bleeding", "persistent bleeding or oozing from puncture sites, mouth, or nose"),
        ("the whites of his eyes look yellow", "yellow eyes or skin"),
        ("i feel like im going to faint", "fainting"),
        ("he's slurring his words", "slurred speech"),
        ("I keep getting my words mixed up", "problems with speech or speaking"),
        ("feeling unwell all over", "general feeling of illness"),
    ],
)
def test_lay_words_map_to_monograph_terms(triager: Triager, text: str, term: str) -> None:
    found = terms(triager, text)
    assert term in found, found


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("I've been feeling a bit down", "feeling sad or empty"),
        ("seeing double since this morning", "blurred vision"),
        ("my legs feel like jelly", "unusual tiredness or weakness"),
        ("haven't been able to go for days", "difficulty having a bowel movement"),
        ("there's blood in his pee", "unusual bleeding or bruising"),
        ("she's not making any sense", "confusion"),
        ("can't be bothered with anything anymore", "loss of interest or pleasure"),
        ("she's been sick twice this morning", "vomiting"),
        ("feeling a bit sick after lunch", "nausea"),
        ("my ankles are like balloons", "swelling of the hands, ankles, feet, or lower legs"),
        ("he's not talking properly", "problems with speech or speaking"),
        ("fewer wet nappies than usual", "change in urination"),
        ("my wee is like coffee", "darkened urine"),
        ("headach n feel sik", "nausea"),
    ],
)
def test_everyday_phrasings_of_monograph_terms(triager: Triager, text: str, term: str) -> None:
    assert term in terms(triager, text)


@pytest.mark.parametrize("text", ["we haven't been able to go out", "his fever went down", "lie down for a bit"])
def test_everyday_phrasings_do_not_overreach(triager: Triager, text: str) -> None:
    assert triager.triage(text).symptoms == ()


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("i have a feaver", "fever"),
        ("a headacje since noon", "headache"),
        ("hes been vomoting", "vomiting"),
        ("my daughter had more seizurs", "seizures"),
        ("so tirred today", "unusual tiredness or weakness"),
    ],
)
def test_unlisted_misspellings_are_corrected_and_say_so(triager: Triager, text: str, term: str) -> None:
    result = triager.triage(text)
    symptom = next(s for s in result.symptoms if s.term == term)
    assert symptom.method == "fuzzy"
    assert 0 < symptom.score < 1
    assert "read as" in symptom.reason


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("really bad headach", "headache"),
        ("feeling nausious", "nausea"),
        ("so tierd", "unusual tiredness or weakness"),
        ("vomitting since last night", "vomiting"),
        ("hes got a temprature", "fever"),
        ("i think hes having a sezure", "seizures"),
    ],
)
def test_common_misspellings_are_understood(triager: Triager, text: str, term: str) -> None:
    assert term in terms(triager, text)


@pytest.mark.parametrize(
    "text",
    [
        "I never had anything like this",  # never is not fever
        "can you see me tomorrow",  # see is not pee
        "we will see",
        "the lever on the bed is stuck",  # lever is not fever
        "I am feeling great today",
        "the weather is cold and rainy",
        "my son is never shy",
        "see you later",
    ],
)
def test_common_words_are_not_corrected_into_symptoms(triager: Triager, text: str) -> None:
    assert triager.triage(text).symptoms == ()


def test_overlapping_matches_resolve_to_the_longest(triager: Triager) -> None:
    result = triager.triage("lower back pain")
    assert [s.term for s in result.symptoms] == ["lower back or side pain"]


def test_several_symptoms_in_one_message_are_all_found(triager: Triager) -> None:
    found = terms(triager, "fever, chills, a cough and a sore throat, plus diarrhea")
    assert {"fever", "chills", "cough", "sore throat", "diarrhea"} <= found


def test_spans_point_at_the_patients_words(triager: Triager) -> None:
    text = "Since Tuesday my HEAD really hurts"
    symptom = triager.triage(text).symptoms[0]
    assert text[symptom.start : symptom.end] == symptom.span == "HEAD really hurts"


def test_sms_spelling_is_understood(triager: Triager) -> None:
    assert "fever" in terms(triager, "u think its a feva? hes rly hot 2day")
