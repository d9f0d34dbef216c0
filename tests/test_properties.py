"""No input string, however odd, makes the core raise; the JSON form is always valid and complete."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.triage.result import Level
from bot.triage.triager import Triager, sanitize

ALLOWED = {level.value for level in Level}
quick = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(triager: Triager, text: str) -> dict[str, object]:
    result = triager.triage(text)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["level"] in ALLOWED
    assert isinstance(data["reason"], str) and data["reason"]
    for symptom in result.symptoms:
        assert 0 <= symptom.start < symptom.end <= len(text)
        assert sanitize(text)[symptom.start : symptom.end] == symptom.span
        assert not symptom.negated
    return data


@quick
@given(st.text())
def test_any_unicode_text_is_triaged_without_error(triager: Triager, text: str) -> None:
    check(triager, text)


@quick
@given(st.text(alphabet=st.characters(whitelist_categories=("Cc", "Zs", "Zl", "Zp", "So", "Sk", "Sm", "Po"))))
def test_symbols_emoji_controls_and_whitespace_are_none_or_unclear(triager: Triager, text: str) -> None:
    data = check(triager, text)
    assert data["level"] in {"none", "unclear"} or data["symptoms"], data


@quick
@given(
    st.text(
        alphabet=st.characters(whitelist_categories=("Lo", "Ll", "Lu"), min_codepoint=0x0370, max_codepoint=0x9FFF),
        min_size=2,
    )
)
def test_text_in_other_scripts_is_unclear(triager: Triager, text: str) -> None:
    assert check(triager, text)["level"] == "unclear"


@quick
@given(st.lists(st.sampled_from(["no", "not", "fever", "rash", "but", "if", "38.5", "\n", "…", "can't", "stop"]),
                max_size=60))  # fmt: skip
def test_cue_soup_never_raises(triager: Triager, words: list[str]) -> None:
    check(triager, " ".join(words))


def test_empty_and_whitespace_are_none(triager: Triager) -> None:
    for text in ["", " ", "\n\n\t", "\u200b"]:
        assert triager.triage(text).level == Level.NONE


def test_a_100_kb_message_is_read_to_the_end(triager: Triager) -> None:
    text = "I am fine today. " * 6000 + "He had a seizure."
    assert len(text) > 100_000
    result = triager.triage(text)
    assert result.level == Level.EMERGENCY
    assert text[result.symptoms[0].start : result.symptoms[0].end] == result.symptoms[0].span


def test_lone_surrogates_and_nul_bytes_are_safe(triager: Triager) -> None:
    data = check(triager, "fever \ud800 and \x00 chills")
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # printable as UTF-8, as the CLI does
