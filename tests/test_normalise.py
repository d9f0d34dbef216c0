"""Text that looks the same triages the same (DESIGN.md policy 7): spacing, line breaks, invisible
characters, compatibility forms, accents, look-alike letters, digits for letters and markup never lower a
decision, and every span still points at the patient's own characters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.triage.normalise import confusables, normalise
from bot.triage.result import Level
from bot.triage.triager import Triager, sanitize

# -- the findings of the review, verbatim -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level", "term"),
    [
        ("my baby is not  breathing", Level.EMERGENCY, None),
        ("he is not\nbreathing", Level.EMERGENCY, None),
        ("can't\nbreathe", Level.EMERGENCY, None),
        ("trouble\u00a0breathing", Level.CALL_NOW, "troubled breathing"),
        ("trouble\u2009breathing", Level.CALL_NOW, "troubled breathing"),
        ("trouble\r\nbreathing", Level.CALL_NOW, "troubled breathing"),
        ("she has a stiff  neck", Level.CALL_NOW, "stiff neck"),
        ("sei\u200bzure", Level.EMERGENCY, "seizures"),
        ("sei\u200czure", Level.EMERGENCY, "seizures"),
        ("sei\u200dzure", Level.EMERGENCY, "seizures"),
        ("sei\u00adzure", Level.EMERGENCY, "seizures"),
        ("sei\u2060zure", Level.EMERGENCY, "seizures"),
        ("\ufeffseizure", Level.EMERGENCY, "seizures"),
        ("sei\u200fzure", Level.EMERGENCY, "seizures"),
        ("ｆｅｖｅｒ", Level.CALL_NOW, "fever"),
        ("fe\u0301ver", Level.CALL_NOW, "fever"),
        ("\u0455eizure", Level.EMERGENCY, "seizures"),
        ("<b>fever</b>", Level.CALL_NOW, "fever"),
        ("fe<i>ver</i>", Level.CALL_NOW, "fever"),
        ("f3ver", Level.CALL_NOW, "fever"),
        ("vom1ting all night", Level.CALL_NOW, "vomiting"),
        ("𝐟𝐞𝐯𝐞𝐫", Level.CALL_NOW, "fever"),
        ("trouble&nbsp;breathing", Level.CALL_NOW, "troubled breathing"),
    ],
)
def test_disguised_symptoms_triage_like_their_plain_form(
    triager: Triager, text: str, level: Level, term: str | None
) -> None:
    result = triager.triage(text)
    assert result.level == level, result.reason
    if term is not None:
        assert term in {s.term for s in result.symptoms}


def test_arabic_indic_digits_are_read_with_their_decimals(triager: Triager) -> None:
    result = triager.triage("temp \u0663\u0669\u066b\u0665")  # ٣٩٫٥
    assert result.temperature is not None
    assert result.temperature.celsius == pytest.approx(39.5)
    assert result.temperature.span == "\u0663\u0669\u066b\u0665"


def test_spans_point_at_the_original_characters(triager: Triager) -> None:
    text = "<p>my  son is\u00a0having a sei\u200bzure</p> and ｆｅｖｅｒ"
    result = triager.triage(text)
    spans = {s.term: (s.start, s.end, s.span) for s in result.symptoms}
    start, end, span = spans["seizures"]
    assert text[start:end] == span == "sei\u200bzure"
    start, end, span = spans["fever"]
    assert text[start:end] == span == "ｆｅｖｅｒ"


def test_a_denial_does_not_reach_across_a_line_break(triager: Triager) -> None:
    assert triager.triage("no fever\nheadache").level == Level.CALL_NOW
    assert triager.triage("no fever or headache").level == Level.NONE


def test_other_scripts_stay_unreadable_not_folded_into_english(triager: Triager) -> None:
    assert triager.triage("у меня сильная головная боль").level == Level.UNCLEAR
    assert triager.triage("j'ai mal à la tête").level == Level.UNCLEAR


def test_normalised_offsets_cover_the_original() -> None:
    text = "a\u200b  b\r\n<b>c</b>ｄ"
    plain = normalise(text)
    assert plain.text == "a b cd"
    assert plain.origin(0, len(plain.text)) == (0, len(text))
    assert plain.origin(2, 3) == (text.index("b"), text.index("b") + 1)
    assert plain.crosses_break(2, 5)
    assert not plain.crosses_break(0, 2)


def test_plain_ascii_is_left_as_it_is() -> None:
    plain = normalise("I threw up twice, temp 38.2")
    assert plain.text == plain.original
    assert plain.origin(2, 7) == (2, 7)


# -- the property: inserting any disguise into any catalogue phrase never lowers its level -------------

WHITESPACE = ["  ", "\n", "\r\n", "\t", "\u00a0", "\u2009", "\u3000", " \n ", "\u2028"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u200e", "\u200f", "\u034f", "\u180e"]
LEET = {"e": "3", "o": "0", "a": "4", "s": "5", "t": "7", "i": "1"}


def _lookalikes() -> dict[str, str]:
    """One Cyrillic or Greek look-alike per Latin letter that has one."""
    found: dict[str, str] = {}
    for lookalike, latin in sorted(confusables().items()):
        if "\u0370" <= lookalike <= "\u04ff" and latin.islower():
            found.setdefault(latin, lookalike)
    return found


LOOKALIKES = _lookalikes()
Disguise = Callable[[str, int], str | None]


def _space(with_: str) -> Disguise:
    return lambda phrase, at: phrase.replace(" ", with_, 1) if " " in phrase else None


def _insert(character: str) -> Disguise:
    return lambda phrase, at: phrase[:at] + character + phrase[at:] if 0 < at < len(phrase) else None


def _letter(change: Callable[[str], str | None], inner: bool = False) -> Disguise:
    def apply(phrase: str, at: int) -> str | None:
        low, high = (1, len(phrase) - 1) if inner else (0, len(phrase))
        for index in range(at, high):
            if index >= low and phrase[index].isalpha() and (not inner or phrase[index - 1].isalpha()):
                if inner and not phrase[index + 1].isalpha():
                    continue
                new = change(phrase[index])
                if new is not None:
                    return phrase[:index] + new + phrase[index + 1 :]
        return None

    return apply


DISGUISES: dict[str, Disguise] = {
    **{f"whitespace {w!r}": _space(w) for w in WHITESPACE},
    **{f"invisible {c!r}": _insert(c) for c in INVISIBLE},
    "fullwidth": lambda phrase, at: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" for c in phrase),
    "combining accent": _letter(lambda c: c + "\u0301"),
    "look-alike letter": _letter(lambda c: LOOKALIKES.get(c)),
    "digit for letter": _letter(lambda c: LEET.get(c), inner=True),
    "markup around": lambda phrase, at: f"<b>{phrase}</b>",
    "markup inside": _insert("<i></i>"),
    "line break markup": _space("<br>"),
}
TEMPLATES = ["{}", "my son has {} since this morning", "I think I have {}. what should I do"]


def _urgent_phrases(triager: Triager) -> Iterator[str]:
    """Plain catalogue phrases (no group or gap syntax) of call-now and emergency terms."""
    for entry in triager.catalogue.entries:
        if entry.level.rank < Level.CALL_NOW.rank:
            continue
        for phrase in (entry.term, *entry.also_named, *entry.synonyms, *entry.severe_synonyms):
            if "{" not in phrase and "..." not in phrase and len(phrase) > 3:
                yield phrase


@pytest.fixture(scope="module")
def urgent_phrases(triager: Triager) -> list[str]:
    return sorted(set(_urgent_phrases(triager)))


@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_disguise_inside_a_catalogue_phrase_never_lowers_the_level(
    triager: Triager, urgent_phrases: list[str], data: st.DataObject
) -> None:
    phrase = data.draw(st.sampled_from(urgent_phrases), label="phrase")
    name = data.draw(st.sampled_from(sorted(DISGUISES)), label="disguise")
    at = data.draw(st.integers(min_value=0, max_value=max(len(phrase) - 1, 0)), label="position")
    template = data.draw(st.sampled_from(TEMPLATES), label="template")
    disguised = DISGUISES[name](phrase, at)
    if disguised is None:
        return
    plain, varied = template.format(phrase), template.format(disguised)
    before, after = triager.triage(plain), triager.triage(varied)
    assert after.level.rank >= before.level.rank, (name, varied, before.reason, after.reason)
    for symptom in after.symptoms:
        assert sanitize(varied)[symptom.start : symptom.end] == symptom.span


def test_no_disguised_urgent_phrase_loses_urgency(triager: Triager, urgent_phrases: list[str]) -> None:
    """Every urgent phrase with every disguise, at one place each: none of them loses its level."""
    checked, lowered = 0, []
    for phrase in urgent_phrases:
        plain = triager.triage(f"my son has {phrase} since this morning")
        for name, disguise in DISGUISES.items():
            disguised = disguise(phrase, len(phrase) // 2)
            if disguised is None:
                continue
            checked += 1
            varied = triager.triage(f"my son has {disguised} since this morning")
            if varied.level.rank < plain.level.rank:
                lowered.append((name, disguised, plain.level.value, varied.level.value))
    assert checked > 1500
    assert not lowered, f"{len(lowered)} of {checked} lose urgency, e.g. {lowered[:5]}"
