"""DESIGN.md's triage policy, end to end through the core: Precautions win, worst wins, emergency kept
small, unclear never reassuring, none for greetings, questions and denials, and a reason every time."""

from __future__ import annotations

import pytest

from bot.triage.result import Level
from bot.triage.triager import Triager


def level(triager: Triager, text: str) -> str:
    return triager.triage(text).level.value


@pytest.mark.parametrize(
    "text",
    [
        "I'm constipated",
        "haven't pooed in four days",
        "my knees and elbows ache",
        "muscle cramps in my calves",
        "I'm weeing a lot more than usual",
        "he's hardly peed today",
    ],
)
def test_precautions_win_over_the_minor_list(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.CALL_NOW, result.reason
    assert "Precautions" in result.symptoms[0].reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dry mouth", "mention"),
        ("not very hungry lately", "mention"),
        ("I'm always thirsty", "mention"),
        ("my legs are a bit shaky", "mention"),
        ("loose stools", "mention"),
    ],
)
def test_the_minor_list_alone_is_mention(triager: Triager, text: str, expected: str) -> None:
    assert level(triager, text) == expected


def test_worst_wins_and_each_symptom_keeps_its_level(triager: Triager) -> None:
    result = triager.triage("some diarrhea and a fever")
    assert result.level == Level.CALL_NOW
    levels = {s.term: s.level for s in result.symptoms}
    assert levels == {"diarrhea": Level.MENTION, "fever": Level.CALL_NOW}


@pytest.mark.parametrize(
    "text",
    [
        "he had a convulsion",
        "she's having a seizure right now",
        "he passed out and we can't wake him",
        "my son is unresponsive",
        "I can't breathe",
    ],
)
def test_emergencies(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.EMERGENCY
    assert "emergency" in result.symptoms[0].reason


@pytest.mark.parametrize(
    "text",
    [
        "I feel off",
        "something hurts",
        "my ear hurts",
        "I just don't feel right",
        "feeling weird today",
        "something's not right with him",
    ],
)
def test_a_complaint_that_matches_nothing_is_unclear(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.UNCLEAR, result.reason
    assert "call" in result.reason.lower()


@pytest.mark.parametrize(
    "text",
    ["我发烧了", "j'ai mal à la tête", "ich habe fieber und kopfschmerzen", "asdkjh qwpoeiu", "у меня жар"],
)
def test_a_language_the_bot_does_not_read_is_unclear(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level == Level.UNCLEAR
    assert "emergency" in result.reason


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        "thanks!",
        "hi",
        "thx",
        "ok thanks",
        "how long is each treatment cycle?",
        "can I breastfeed?",
        "when is my next appointment",
        "",
        "   ",
        "👍",
    ],
)
def test_greetings_and_questions_are_none(triager: Triager, text: str) -> None:
    assert level(triager, text) == "none"


def test_every_counted_symptom_says_which_words_matched_and_why(triager: Triager) -> None:
    result = triager.triage("throwing up all morning and my pee is cloudy")
    assert result.symptoms
    for symptom in result.symptoms:
        assert f"'{symptom.span}' matched '{symptom.term}'" in symptom.reason
        assert "monograph" in symptom.reason


def test_a_denial_only_message_says_what_was_set_aside(triager: Triager) -> None:
    result = triager.triage("no fever, no rash")
    assert result.level == Level.NONE
    assert "fever" in result.reason and "negated" in result.reason


def test_the_json_form_follows_the_contract(triager: Triager) -> None:
    data = triager.triage("headache and a temp of 38.4").to_dict()
    assert set(data) >= {"level", "symptoms", "temperature"}
    for symptom in data["symptoms"]:
        assert set(symptom) >= {"term", "level", "syndromes", "span", "start", "end", "method", "score",
                                "negated", "reason"}  # fmt: skip
        assert symptom["negated"] is False
    assert data["temperature"]["celsius"] == 38.4
