"""The conversation against the real servers: the next question after an answer is answered from the
conversation (issue: follow-ups, emergencies that stay first, worse and better, the temperature dialogue,
yes and no, thanks after an urgent answer, unresponsive is an emergency)."""

from __future__ import annotations

import pytest

from tests.conftest import Assistant

pytestmark = pytest.mark.integration

EMERGENCY = "call emergency services now"
RIGHT_AWAY = "right away"
NOT_FOLLOW_UPS = ["take care", "automated assistant", "driving", "hospital for the first 3 days", "steroid"]


def talk(assistant: Assistant, name: str, *turns: str) -> list[tuple[str, dict]]:
    return [(text.lower(), triage) for text, triage in (assistant.say(name, turn) for turn in turns)]


@pytest.mark.parametrize(
    ("first", "follow_up", "level", "instruction"),
    [
        ("my son is having a seizure", "what do I do now?", "emergency", EMERGENCY),
        ("I can't breathe, I'm gasping for air", "should I wait and see if it settles?", "emergency", EMERGENCY),
        ("I can't wake him up", "should I wait for the nurse to ring back?", "emergency", EMERGENCY),
        ("my temperature is 38.6", "is that serious?", "call_now", RIGHT_AWAY),
        ("I've been vomiting since lunch", "should I ring the hospital?", "call_now", RIGHT_AWAY),
        ("my fever is 38.3", "can it wait till morning?", "call_now", RIGHT_AWAY),
        ("a bit of diarrhea today", "is that bad?", "mention", "not urgent"),
    ],
)
def test_a_follow_up_question_gets_the_current_instruction(
    assistant: Assistant, first: str, follow_up: str, level: str, instruction: str
) -> None:
    (_, before), (reply, after) = talk(assistant, f"follow-up {first}", first, follow_up)
    assert before["level"] == level
    assert after["level"] == level, reply
    assert instruction in reply
    assert not any(wrong in reply for wrong in NOT_FOLLOW_UPS), reply


def test_an_emergency_stays_the_first_line_until_it_is_handled(assistant: Assistant) -> None:
    turns = talk(assistant, "persisting emergency", "he's having a fit", "thank you", "how long is a cycle?",
                 "the ambulance is here", "thanks")  # fmt: skip
    for reply, _ in turns[:3]:
        assert reply.split("\n")[0].startswith(("call emergency services now", "if you have not already")), reply
        assert EMERGENCY in reply
    handled, after = turns[3], turns[4]
    assert "good" in handled[0] and handled[1]["emergency_open"] is False
    assert EMERGENCY not in after[0]


@pytest.mark.parametrize(
    ("first", "then"),
    [("I've had diarrhea today", "it's getting much worse, every hour now"),
     ("my mouth is dry", "it's constant and really bad now")],
)  # fmt: skip
def test_worse_or_constant_makes_the_symptom_just_reported_call_now(
    assistant: Assistant, first: str, then: str
) -> None:
    (_, before), (reply, after) = talk(assistant, f"worse {first}", first, then)
    assert before["level"] == "mention"
    assert after["level"] == "call_now", reply
    assert RIGHT_AWAY in reply


def test_better_resolves_the_symptom_just_reported(assistant: Assistant) -> None:
    (_, first), (reply, better), (follow_up, _) = talk(
        assistant, "better", "I have a headache", "it's better now", "what do I do now?"
    )
    assert first["level"] == "call_now"
    assert better["level"] == "none" and "better" in reply
    assert RIGHT_AWAY not in follow_up


def test_a_fever_in_words_asks_for_a_reading_and_a_bare_number_is_that_reading(assistant: Assistant) -> None:
    (asked, hot), (reply, reading) = talk(assistant, "hot 1", "she feels really hot", "37.6")
    assert hot["level"] == "call_now" and "temperature" in asked
    assert reading["level"] == "none" and reading["temperature"]["celsius"] == 37.6
    assert "within an hour" in reply and RIGHT_AWAY not in reply
    (_, _), (reply, reading) = talk(assistant, "hot 2", "he's burning up", "38")
    assert reading["level"] == "call_now" and reading["temperature"]["celsius"] == 38.0


def test_yes_after_a_question_about_a_side_effect_means_they_have_it(assistant: Assistant) -> None:
    (info, asked), (reply, yes) = talk(assistant, "yes", "could this medicine make me tired?", "yes")
    assert asked["level"] == "none" and "medicine guide" in info
    assert yes["level"] == "call_now", reply


def test_thanks_after_an_urgent_answer_reminds_of_the_instruction_once(assistant: Assistant) -> None:
    _, (thanks, _), (again, _) = talk(assistant, "thanks", "I have chills and a headache", "thanks", "thank you")
    assert "remember" in thanks and RIGHT_AWAY in thanks
    assert "remember" not in again


@pytest.mark.parametrize("text", ["she just collapsed and isn't responding", "I can't wake him, he's breathing"])
def test_unresponsive_is_an_emergency(assistant: Assistant, text: str) -> None:
    [(reply, triage)] = talk(assistant, f"unresponsive {text}", text)
    assert triage["level"] == "emergency" and EMERGENCY in reply
