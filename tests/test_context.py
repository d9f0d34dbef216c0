"""Context rules: negation with scope, resolved, hypothetical, severity, and caregivers reporting."""

from __future__ import annotations

import pytest

from bot.triage.triager import Triager


def counted(triager: Triager, text: str) -> set[str]:
    return {symptom.term for symptom in triager.triage(text).symptoms}


def set_aside(triager: Triager, text: str) -> dict[str, tuple[str, ...]]:
    return {symptom.term: symptom.context for symptom in triager.triage(text).excluded}


@pytest.mark.parametrize(
    "text",
    [
        "no fever",
        "No fever.",
        "he doesn't have a fever",
        "she hasnt had a fever",
        "denies fever",
        "without any fever",
        "I dont have a temperature",
        "never had a fever on this drug",
    ],
)
def test_negation_sets_the_symptom_aside(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level.value == "none", result.reason
    assert "fever" in set_aside(triager, text)


def test_no_fever_or_chills_negates_both(triager: Triager) -> None:
    result = triager.triage("no fever or chills")
    assert result.level.value == "none"
    assert set(set_aside(triager, "no fever or chills")) == {"fever", "chills"}


def test_no_fever_but_chills_negates_only_the_fever(triager: Triager) -> None:
    assert counted(triager, "no fever but chills") == {"chills"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no fever, my head hurts", {"headache"}),
        ("no fever my head is killing me", {"headache"}),
        ("I don't have a fever and my throat is sore", {"sore throat"}),
        ("no headache, however I keep throwing up", {"vomiting"}),
        ("no fever no cough just tired", {"unusual tiredness or weakness"}),
        ("no temp, only a cough", {"cough"}),
        ("not coughing but my throat is sore", {"sore throat"}),
    ],
)
def test_negation_stops_at_a_new_clause(triager: Triager, text: str, expected: set[str]) -> None:
    assert expected <= counted(triager, text)
    assert "fever" not in counted(triager, text)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("not vomiting anymore", "vomiting"),
        ("the fever is gone now", "fever"),
        ("her rash went away", "rash"),
        ("the diarrhea stopped yesterday", "diarrhea"),
        ("headache has cleared up", "headache"),
        ("no longer dizzy", "dizziness"),
        ("fever's gone but she still has a headache", "fever"),
    ],
)
def test_resolved_symptoms_do_not_count(triager: Triager, text: str, term: str) -> None:
    assert term not in counted(triager, text)
    assert term in set_aside(triager, text)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("can't stop throwing up", "vomiting"),
        ("the headache won't go away", "headache"),
        ("diarrhea hasn't stopped", "diarrhea"),
        ("please make this headache stop", "headache"),
    ],
)
def test_phrases_that_look_resolved_but_are_not_still_count(triager: Triager, text: str, term: str) -> None:
    assert term in counted(triager, text)


@pytest.mark.parametrize(
    "text",
    [
        "what if I get a rash?",
        "what happens if he gets a fever",
        "is it normal to watch for headaches?",
        "in case of fever who do I call",
        "can it cause a rash?",
        "if my son gets a fever should I call",
    ],
)
def test_hypothetical_symptoms_do_not_count(triager: Triager, text: str) -> None:
    assert triager.triage(text).level.value == "none", triager.triage(text).reason


def test_a_real_symptom_beside_a_hypothetical_question_counts(triager: Triager) -> None:
    assert counted(triager, "I have a rash. What if I get a fever too?") == {"rash"}


@pytest.mark.parametrize(
    "text",
    [
        "my son has a fever",
        "he is confused",
        "my daughter keeps throwing up",
        "our little one has a rash",
        "my husband's feet are swollen",
    ],
)
def test_caregivers_reporting_for_the_patient_count(triager: Triager, text: str) -> None:
    assert triager.triage(text).level.value == "call_now"


@pytest.mark.parametrize(
    "text",
    [
        "unbearable diarrhea",
        "the diarrhoea is getting worse",
        "really bad dry mouth",
        "constant pain in my arms",
        "my mouth is so dry it's unbearable",
        "i cant stop shaking",
    ],
)
def test_a_minor_symptom_described_as_severe_is_call_now(triager: Triager, text: str) -> None:
    result = triager.triage(text)
    assert result.level.value == "call_now", result.reason
    assert "severe" in result.symptoms[0].context
    assert "described as severe" in result.symptoms[0].reason


def test_a_minor_symptom_alone_is_mention(triager: Triager) -> None:
    assert triager.triage("a bit of diarrhea today").level.value == "mention"


@pytest.mark.parametrize("text", ["he can't breathe", "she is gasping for air", "severe trouble breathing"])
def test_breathing_trouble_described_as_severe_is_an_emergency(triager: Triager, text: str) -> None:
    assert triager.triage(text).level.value == "emergency"


def test_plain_shortness_of_breath_is_call_now(triager: Triager) -> None:
    assert triager.triage("I get out of breath walking upstairs").level.value == "call_now"


def _messages() -> list[str]:
    """Every message of the project's own evaluation sets, English and Spanish, plus generated ones."""
    import json
    from pathlib import Path

    from tools.bench_triage import messages

    texts = messages(600, seed=11)
    for path in sorted((Path(__file__).resolve().parents[1] / "eval").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                texts += [record["text"]] if "text" in record else [turn["text"] for turn in record["turns"]]
    return texts


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_faster_cue_matcher_finds_exactly_what_spacys_matcher_finds(triager: Triager, language: str) -> None:
    """The cue matcher that replaces the token-pattern Matcher inside ConText must give the same matches, in
    the same order, as ConText with every cue in spaCy's Matcher (rule ids are assigned in the same order)."""
    import copy

    from medspacy.context import ConText

    from bot.triage import context

    reader = triager if language == "en" else triager.spanish_triager()
    assert reader is not None
    ours = reader._context._context
    reference = ConText(ours.nlp, rules=None, phrase_matcher_attr="LEMMA", span_attrs=None)
    reference.add([copy.copy(rule) for rule in ours.rules])  # copies: add() renames the rules it is given
    fast, plain = getattr(ours, context._CONTEXT_MATCHER), getattr(reference, context._CONTEXT_MATCHER)
    assert isinstance(getattr(fast, context._TOKEN_MATCHER), context._CueMatcher)
    compared = 0
    for text in _messages():
        doc = reader._read(text)
        reader._speller.apply(doc)  # match keys as lemmas, as in a real triage
        mine = [(ours.nlp.vocab.strings[key], start, end) for key, start, end in fast(doc)]
        theirs = [(reference.nlp.vocab.strings[key], start, end) for key, start, end in plain(doc)]
        assert mine == theirs, text
        compared += bool(mine)
    assert compared > 500


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_context_run_gives_the_edges_of_medspacys_own(triager: Triager, language: str) -> None:
    """`run_context` (ConText's algorithm with sentence bounds read once) must give the edges that
    `ConText.__call__` gives, for catalogue phrases and for single words as targets, both pruning modes."""
    from spacy.tokens import Span

    from bot.triage import context

    reader = triager if language == "en" else triager.spanish_triager()
    assert reader is not None
    edges = 0
    for text in _messages():
        doc = reader._read(text)
        reader._speller.apply(doc)
        phrases = [(m.start, m.end) for m in reader._symptoms.find(doc)]
        for engine, spans in (
            (reader._context._context, phrases),
            (reader._context._inside, [(i, i + 1) for i in range(len(doc))]),
        ):
            if not spans:
                continue
            ours = context.run_context(engine, doc, [Span(doc, s, e, label="TARGET") for s, e in spans])
            doc.spans[context.GROUP] = [Span(doc, s, e, label="TARGET") for s, e in spans]
            engine(doc)
            theirs = doc._.context_graph.edges

            def plain(found: list) -> list:
                return [((t.start, t.end), m.rule._rule_id, m.modifier_span, m.scope_span) for t, m in found]

            assert plain(ours) == plain(theirs), text
            edges += len(ours)
    assert edges > 1000
