"""Temperatures in both scales, with or without units, read and banded as DESIGN.md says."""

from __future__ import annotations

import pytest

from bot.triage import temperature
from bot.triage.knowledge import DEFAULT_DIR
from bot.triage.triager import Triager

thermometer = temperature.load(DEFAULT_DIR / "temperature.csv")


@pytest.mark.parametrize(
    ("text", "celsius", "band"),
    [
        ("temp 38.6", 38.6, "fever"),
        ("I've got a temperature of 38.2", 38.2, "fever"),
        ("38.0", 38.0, "fever"),
        ("38C", 38.0, "fever"),
        ("39 °C", 39.0, "fever"),
        ("39,2°C", 39.2, "fever"),
        ("38.5 degrees", 38.5, "fever"),
        ("101.3", 38.5, "fever"),
        ("temp 100.4F", 38.0, "fever"),
        ("fever of 101", 38.3, "fever"),
        ("102 degrees F", 38.9, "fever"),
        ("104F", 40.0, "extreme"),
        ("temp is 40.2", 40.2, "extreme"),
        ("temp 99.1F", 37.3, "normal"),
        ("37.8", 37.8, "borderline"),
        ("temperature 37.5", 37.5, "borderline"),
        ("temp 36.9 this morning", 36.9, "normal"),
        ("it was 37 then 38.9 an hour later", 38.9, "fever"),
    ],
)
def test_a_reading_is_converted_and_banded(text: str, celsius: float, band: str) -> None:
    reading = thermometer.read(text)
    assert reading is not None, text
    assert reading.celsius == pytest.approx(celsius, abs=0.05)
    assert reading.band == band


@pytest.mark.parametrize(
    "text",
    [
        "he is 38",  # an age, not a temperature
        "38 weeks pregnant",
        "weighs 38.5 kg",
        "took 100 mg",
        "room 101",
        "BP 120/80",
        "call me at 10:38",
        "cycle 2 day 38",
        "my number is 0412 381 012",
        "",
    ],
)
def test_numbers_that_are_not_temperatures_are_ignored(text: str) -> None:
    assert thermometer.read(text) is None


def test_fever_from_a_number_is_call_now_with_the_reading_in_the_reason(triager: Triager) -> None:
    result = triager.triage("my baby girl has a temp of 38.5")
    assert result.level.value == "call_now"
    fever = next(s for s in result.symptoms if s.method == "temperature")
    assert fever.term == "fever"
    assert "38.5 °C" in fever.reason


def test_an_extreme_reading_is_the_extreme_fever_term(triager: Triager) -> None:
    result = triager.triage("temp 104.5")
    assert result.symptoms[0].term == "extremely high fever or body temperature"
    assert result.symptoms[0].method == "temperature"


def test_below_fever_the_words_alone_do_not_count(triager: Triager) -> None:
    result = triager.triage("temp 99.1F")
    assert result.level.value == "none"
    assert result.temperature is not None and result.temperature.band == "normal"


def test_a_borderline_reading_advises_checking_again_within_an_hour(triager: Triager) -> None:
    result = triager.triage("temperature is 37.7")
    assert result.level.value == "none"
    assert result.temperature is not None
    assert "within an hour" in result.temperature.advice
    assert "within an hour" in result.reason


def test_feeling_hot_without_a_number_is_still_call_now(triager: Triager) -> None:
    assert triager.triage("he feels really hot and feverish").level.value == "call_now"
