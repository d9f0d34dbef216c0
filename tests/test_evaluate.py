"""The evaluation (`make eval`): its metrics on small cases with known answers, the project's test set
(format, coverage of every level and syndrome), the held-out phrases staying out of the catalogue, and
the baselines' inputs. Nothing here trains or loads a Rasa model."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

from bot.triage import catalogue
from bot.triage.catalogue import Catalogue
from bot.triage.result import Level
from tools.evaluation import cases, diet, report
from tools.evaluation.cases import Case, HeldOut
from tools.evaluation.metrics import NO_SYNDROME, Prediction, judge, score, subset
from tools.evaluation.systems import CatalogueLevels, FuzzyBaseline

SYNDROMES = {"fever": ("CRS", "infection"), "cough": ("infection",), "dry mouth": ()}


@pytest.fixture(scope="module")
def known() -> Catalogue:
    return catalogue.load()


@pytest.fixture(scope="module")
def test_set() -> list[Case]:
    return cases.load_cases(cases.TEST_SET)


def case(levels: list[str], terms: list[list[str]], text: str = "a message") -> Case:
    return Case(text, tuple(Level(level) for level in levels), tuple(tuple(group) for group in terms))


def answer(level: str, *terms: str) -> Prediction:
    return Prediction(Level(level), frozenset(terms))


# -- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "given", "verdict"),
    [
        (["call_now"], "mention", "under"),
        (["call_now"], "unclear", "under"),
        (["call_now"], "emergency", "over"),
        (["call_now", "emergency"], "emergency", "ok"),
        (["none", "mention"], "mention", "ok"),
        (["none"], "unclear", "over"),
    ],
)
def test_a_level_below_every_acceptable_one_is_under_triage(levels: list[str], given: str, verdict: str) -> None:
    assert judge(case(levels, []), answer(given)).triage == verdict


def test_one_alternative_finds_a_term_and_unexpected_terms_are_extra() -> None:
    verdict = judge(case(["call_now"], [["fever"], ["chills", "shaking"]]), answer("call_now", "shaking", "rash"))
    assert verdict.found == (("chills", "shaking"),)
    assert verdict.missing == (("fever",),)
    assert verdict.extra == ("rash",)


def test_two_alternatives_of_one_term_found_together_count_once_and_add_nothing() -> None:
    verdict = judge(case(["call_now"], [["fever", "high fever"]]), answer("call_now", "fever", "high fever"))
    assert verdict.found == (("fever", "high fever"),) and verdict.extra == ()


def test_scores_count_triage_terms_and_confusion_as_the_shared_scorer_does() -> None:
    vignettes = [
        case(["call_now"], [["fever"], ["cough"]]),
        case(["mention"], [["dry mouth"]]),
        case(["none"], []),
        case(["call_now", "emergency"], [["cough"]]),
    ]
    answers = [answer("call_now", "fever"), answer("none"), answer("mention", "dry mouth"), answer("call_now", "cough")]
    s = score(vignettes, answers, SYNDROMES)
    assert (s.n, s.under, s.over, s.exact) == (4, 1, 1, 2)
    assert (s.found, s.missing, s.extra) == (2, 2, 1)
    assert s.recall == pytest.approx(0.5) and s.precision == pytest.approx(2 / 3)
    assert s.accuracy == pytest.approx(0.5)
    # rows are the most urgent acceptable level
    assert s.confusion == {
        (Level.CALL_NOW, Level.CALL_NOW): 1,
        (Level.MENTION, Level.NONE): 1,
        (Level.NONE, Level.MENTION): 1,
        (Level.EMERGENCY, Level.CALL_NOW): 1,
    }


def test_per_syndrome_recall_counts_each_term_for_every_syndrome_it_belongs_to() -> None:
    vignettes = [
        case(["call_now"], [["fever"], ["cough"]]),
        case(["call_now"], [["cough"]]),
        case(["mention"], [["dry mouth"]]),
    ]
    answers = [answer("call_now", "fever"), answer("call_now", "cough"), answer("none")]
    s = score(vignettes, answers, SYNDROMES)
    assert (s.syndromes["CRS"].found, s.syndromes["CRS"].expected) == (1, 1)
    assert (s.syndromes["infection"].found, s.syndromes["infection"].expected) == (2, 3)
    assert s.syndromes[NO_SYNDROME].recall == 0.0


def test_an_empty_set_scores_perfectly_rather_than_dividing_by_zero() -> None:
    s = score([], [], SYNDROMES)
    assert (s.recall, s.precision, s.accuracy) == (1.0, 1.0, 1.0)


def test_answers_must_match_cases_one_to_one() -> None:
    with pytest.raises(ValueError, match="1 answers for 2 cases"):
        score([case(["none"], []), case(["none"], [])], [answer("none")], SYNDROMES)


def test_subset_keeps_the_tagged_cases_with_their_answers() -> None:
    tagged = Case("no fever", (Level.NONE,), (), ("negated",))
    chosen, answers = subset([case(["none"], []), tagged], [answer("mention"), answer("none")], "negated")
    assert chosen == [tagged] and answers == [answer("none")]
    others, _ = subset([case(["none"], []), tagged], [answer("mention"), answer("none")], "negated", carrying=False)
    assert others == [case(["none"], [])]


# -- the test set ----------------------------------------------------------------------------------


def test_the_test_set_is_large_and_every_term_is_a_catalogue_term(test_set: list[Case], known: Catalogue) -> None:
    assert len(test_set) >= 150
    terms = {entry.term for entry in known.entries}
    assert {term for c in test_set for group in c.terms for term in group} <= terms
    assert len({c.text for c in test_set}) == len(test_set), "a message appears twice"


@pytest.mark.parametrize("level", list(Level))
def test_the_test_set_has_messages_whose_most_urgent_acceptable_level_is(test_set: list[Case], level: Level) -> None:
    assert sum(c.expected == level for c in test_set) >= 5


def test_the_test_set_covers_every_syndrome(test_set: list[Case], known: Catalogue) -> None:
    covered: dict[str, int] = {}
    for c in test_set:
        for group in c.terms:
            for name in {name for term in group for name in known.entry(term).syndromes}:
                covered[name] = covered.get(name, 0) + 1
    assert set(covered) == set(known.syndromes)
    assert min(covered.values()) >= 10


@pytest.mark.parametrize("tag", ["heldout", "multi", "negated", "resolved", "misspelled", "british", "emergency"])
def test_the_test_set_has_each_kind_of_message(test_set: list[Case], tag: str) -> None:
    assert sum(tag in c.tags for c in test_set) >= 5


def test_a_malformed_vignette_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "hi", "levels": ["none"], "terms": []}\n{"text": "x", "levels": ["urgent"]}\n')
    with pytest.raises(cases.CaseError, match=r"bad.jsonl, line 2"):
        cases.load_cases(path)


def test_the_shared_development_set_loads_when_present() -> None:
    if not cases.DEV_SET.is_file():
        pytest.skip(f"{cases.DEV_SET} is not here")
    assert len(cases.load_cases(cases.DEV_SET)) > 0


# -- held-out phrases ------------------------------------------------------------------------------


def test_no_held_out_phrase_is_in_the_catalogue(known: Catalogue) -> None:
    """The phrases measure words the triage was never given. To add one to the catalogue, move it out
    of eval/heldout_phrases.csv and its message out of the held-out part of the test set."""
    listed = {h.phrase: found for h in cases.load_heldout() if (found := cases.listed_in(known, h))}
    assert listed == {}


def test_every_held_out_phrase_names_a_catalogue_term_and_is_in_a_held_out_message(
    test_set: list[Case], known: Catalogue
) -> None:
    heldout = cases.load_heldout()
    assert len(heldout) >= 80
    messages = [c for c in test_set if "heldout" in c.tags]
    for phrase in heldout:
        known.entry(phrase.term)
        assert any(
            phrase.phrase.lower() in c.text.lower() and any(phrase.term in g for g in c.terms) for c in messages
        ), f"no held-out message uses {phrase.phrase!r} for {phrase.term!r}"


def test_the_held_out_check_catches_any_wording_of_a_catalogue_phrase(known: Catalogue) -> None:
    rng = random.Random(3)
    for entry in known.entries:
        for phrase in entry.synonyms[:5]:
            wording = diet.render(phrase, known.groups, rng)
            if any(ch.isalpha() for ch in wording):
                assert cases.listed_in(known, HeldOut(entry.term, f"she says {wording} today")), wording


def test_the_held_out_check_sees_through_endings_and_apostrophes(known: Catalogue) -> None:
    entry = next(e for e in known.entries if any("'" in s for s in e.synonyms))
    phrase = next(s for s in entry.synonyms if "'" in s and "{" not in s and "..." not in s)
    assert cases.listed_in(known, HeldOut(entry.term, phrase.replace("'", "").upper()))
    assert cases.listed_in(known, HeldOut(entry.term, "an unrelated phrase about the weather")) is None


def test_a_piece_cut_out_of_a_catalogue_phrase_is_not_held_out_either(known: Catalogue) -> None:
    entry, phrase = next(
        (e, s) for e in known.entries for s in e.synonyms if "{" not in s and len(s.split(" ... ")[0].split()) >= 3
    )
    piece = " ".join(phrase.split(" ... ")[0].split()[1:])
    assert cases.listed_in(known, HeldOut(entry.term, piece)) is not None, (piece, phrase)


# -- baselines -------------------------------------------------------------------------------------


def test_rapidfuzz_finds_one_term_and_its_catalogue_level(known: Catalogue) -> None:
    fuzzy = FuzzyBaseline(known)
    assert fuzzy.predict(["I have a cough", "hello", "dry mouth at night"]) == [
        Prediction(Level.CALL_NOW, frozenset({"cough"})),
        Prediction(Level.NONE),
        Prediction(Level.MENTION, frozenset({"dry mouth"})),
    ]


def test_a_baseline_level_is_the_worst_catalogue_level_and_an_unnamed_span_is_unclear(known: Catalogue) -> None:
    level = CatalogueLevels(known)
    mention = next(e.term for e in known.entries if e.level == Level.MENTION)
    emergency = next(e.term for e in known.entries if e.level == Level.EMERGENCY)
    assert level(frozenset()) == Level.NONE
    assert level(frozenset({mention, emergency})) == Level.EMERGENCY
    assert level(frozenset({"my big toe"})) == Level.UNCLEAR
    assert level(frozenset({mention, "my big toe"})) == Level.MENTION


def test_diet_training_data_is_rasa_yaml_annotated_with_catalogue_terms_only(known: Catalogue) -> None:
    # A few rows keep Rasa's reader quick; the generator treats every row alike.
    few = dataclasses.replace(known, entries=known.entries[:6])
    text, count = diet.training_data(few)
    data = RasaYAMLReader().reads(text)
    assert len(data.training_examples) == count
    values = {e["value"] for m in data.training_examples for e in m.get("entities") or []}
    assert values == {entry.term for entry in few.entries}
    assert {"report_symptom", "deny", "greet", "faq"} <= data.intents


def test_diet_training_data_holds_no_held_out_phrase_and_no_test_message(
    known: Catalogue, test_set: list[Case]
) -> None:
    text, _ = diet.training_data(known)
    lowered = text.lower()
    leaked = [h.phrase for h in cases.load_heldout() if h.phrase.lower() in lowered]
    leaked += [c.text for c in test_set if f"- {c.text.lower()}\n" in lowered]
    assert leaked == []


def test_rendering_a_phrase_fills_groups_and_gaps(known: Catalogue) -> None:
    rng = random.Random(0)
    group, members = next(iter(known.groups.items()))
    wording = diet.render(f"sore ... {{{group}}}", known.groups, rng)
    assert wording.startswith("sore") and wording.split()[-1] in members
    assert len(wording.split()) <= 4


# -- report ----------------------------------------------------------------------------------------


def test_the_report_compares_ours_with_each_baseline_and_draws_the_matrices(tmp_path: Path) -> None:
    vignettes = [case(["call_now"], [["fever"]], "hot"), case(["none"], [], "hi")]
    predictions = {"ours": [answer("call_now", "fever"), answer("none")], "fuzzy": [answer("none"), answer("none")]}
    scores = {name: score(vignettes, answers, SYNDROMES) for name, answers in predictions.items()}
    result = report.SetResult("test", "eval/test_set.jsonl", vignettes, predictions, scores, dict(SYNDROMES))
    text = report.markdown([result], "ours", ["fuzzy"], ["a note"])
    assert "under-triage 0 vs 1 (1 fewer, of 2)" in text
    assert "term recall 100.0% vs 0.0% (+100.0 points)" in text
    assert "| test | fuzzy | 2 | 1 | 0 | 1 (50%) | 0.0% | 100.0% |" in text
    png = tmp_path / "confusion-test.png"
    report.confusion_png(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
