"""Evaluation (`make eval`): the triage core and the full Rasa NLU against two baselines, a naive
rapidfuzz `extractOne` and Rasa's own DIET entity extraction, on the shared development set and on the
project's own test set (`eval/test_set.jsonl`, partly built from the held-out phrases in
`eval/heldout_phrases.csv`).

    python -m tools.evaluate               # trains what is stale, scores, writes build/eval/report.md
    python -m tools.evaluate --no-rasa     # the core and rapidfuzz only (seconds, no training)

Prints the summary table and writes `build/eval/report.md` with `build/eval/confusion-<set>.png`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path

import bot
from bot.triage import catalogue
from bot.triage.catalogue import Catalogue
from tools import serve
from tools.evaluation import cases, conversations, diet, report
from tools.evaluation.metrics import score
from tools.evaluation.systems import DietBaseline, FuzzyBaseline, RasaNLU, System, TriageCore

OUT = serve.ROOT / "build" / "eval"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-rasa", action="store_true", help="skip the two Rasa systems (no training)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"report folder (default {OUT})")
    parser.add_argument("--dev", type=Path, default=cases.DEV_SET, help="development vignettes")
    parser.add_argument("--test", type=Path, default=cases.TEST_SET, help="the project's test vignettes")
    parser.add_argument("--fresh", type=Path, default=cases.FRESH_SET, help="vignettes nothing was tuned on")
    parser.add_argument(
        "--conversations",
        type=Path,
        default=conversations.CONVERSATIONS,
        help="multi-turn conversations scored over the REST webhook (skipped with --no-rasa)",
    )
    parser.add_argument("--tuning", type=Path, default=cases.TUNING_SET, help="the semantic thresholds' tuning set")
    parser.add_argument("--es-dev", type=Path, default=cases.ES_DEV_SET, help="Spanish development vignettes")
    parser.add_argument("--es-test", type=Path, default=cases.ES_TEST_SET, help="Spanish held-out vignettes")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.no_rasa:
        bot.block_tensorflow()  # nothing here needs it (see bot.block_tensorflow)
    known = catalogue.load()
    sets = {"dev": args.dev, "test": args.test, "fresh": args.fresh, "tuning": args.tuning,
            "es-dev": args.es_dev, "es-test": args.es_test}  # fmt: skip
    loaded = {name: cases.load_cases(path) for name, path in sets.items()}
    heldout = sum("heldout" in case.tags for case in loaded["test"])
    notes = [
        f"Development set: `{_shown(args.dev)}` ({len(loaded['dev'])} messages). Test set: `{_shown(args.test)}` "
        f"({len(loaded['test'])} messages written for this project; {heldout} of them are built on the "
        f"{len(cases.load_heldout())} held-out phrases of `eval/heldout_phrases.csv`, lay phrasings the catalogue "
        "does not list, the others are multi-symptom, negated, resolved, misspelled, British, emergency, "
        "unclear and non-symptom messages).",
        f"Fresh set: `{_shown(args.fresh)}` ({len(loaded['fresh'])} messages written before the semantic matcher "
        "and the complaint net were tuned, by someone who saw the catalogue's terms but none of its lay words; "
        f"nothing was tuned on it). Tuning set: `{_shown(args.tuning)}` ({len(loaded['tuning'])} messages): the "
        "semantic thresholds (`knowledge/semantic.csv`) were chosen on it and on the development and test sets.",
        f"Spanish: `{_shown(args.es_dev)}` ({len(loaded['es-dev'])} messages, tuned on) and `{_shown(args.es_test)}` "
        f"({len(loaded['es-test'])} messages, held out), written before the Spanish vocabulary by someone who saw "
        "only the catalogue's terms; the terms are the English catalogue's, the words Spanish. "
        "`triage core` is the lexicon followed by the semantic matcher, as it runs; `lexicon alone` is the same "
        "core with the semantic matcher off (`TRIAGE_SEMANTIC=0`). False alarms: messages whose only acceptable "
        "level is `none` (greetings, questions, other people, quotations, denials) answered with any other level.",
    ]
    systems: list[System] = [TriageCore(), TriageCore(semantic=False)]
    if args.no_rasa:
        systems.append(FuzzyBaseline(known))
    else:
        systems += _rasa_systems(known, notes)
    syndromes = {entry.term: entry.syndromes for entry in known.entries}
    results = []
    for name, path in sets.items():
        clock = time.monotonic()
        texts = [case.text for case in loaded[name]]
        predictions = {system.name: system.predict(texts) for system in systems}
        scores = {system: score(loaded[name], answers, syndromes) for system, answers in predictions.items()}
        results.append(report.SetResult(name, _shown(path), loaded[name], predictions, scores, syndromes))
        print(f"{name} set: {len(texts)} messages through {len(systems)} systems in {time.monotonic() - clock:.0f} s")
    ours, *others = [system.name for system in systems]
    baselines = [name for name in others if name != RasaNLU.name]
    if RasaNLU.name in others:
        agree = sum(
            a == b for r in results for a, b in zip(r.predictions[ours], r.predictions[RasaNLU.name], strict=True)
        )
        total = sum(len(r.cases) for r in results)
        notes.append(f"The full Rasa NLU gives the same level and terms as the core on {agree} of {total} messages.")
    if DietBaseline.name in others:
        notes.append(_unnamed_spans(results, {entry.term for entry in known.entries}))
    notes.append(
        "Baselines: rapidfuzz `process.extractOne(message, catalogue terms, scorer=WRatio, score_cutoff=80)` "
        "(one term or none); Rasa's DIET entity extraction without our SymptomExtractor, its `symptom` entities "
        "named by EntitySynonymMapper (a span it cannot name counts as an added term and makes the message "
        "`unclear`). A baseline's level is the catalogue level of what it found, worst wins; nothing found is "
        "`none`. Scores use the shared scorer's definitions (`../shared/eval/score.py`); the confusion "
        "matrices' rows are the most urgent acceptable level."
    )
    notes.append(f"Run time {time.monotonic() - started:.0f} s, training included, on {os.cpu_count()} cores.")
    dialogue = ""
    if not args.no_rasa:
        talks = conversations.load(args.conversations)
        clock = time.monotonic()
        print(f"conversations: {len(talks)} through the REST webhook ...", flush=True)
        with conversations.running_servers() as client:
            turns = conversations.run(client, talks)
        dialogue = conversations.report(talks, turns)
        print(f"conversations: {sum(t.ok for t in turns)} of {len(turns)} turns right "
              f"in {time.monotonic() - clock:.0f} s")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    for result in results:
        report.confusion_png(result, args.out / f"confusion-{result.name}.png")
    markdown = report.markdown(results, ours, baselines, notes)
    if dialogue:
        markdown += (
            f"\n\n## Conversations (`{_shown(args.conversations)}`, over the REST webhook)\n\n"
            "Each turn is scored on the level of its reply's triage object and on what the reply must and must "
            "not say; a conversation is right when every turn is.\n\n" + dialogue + "\n"
        )
    (args.out / "report.md").write_text(markdown, encoding="utf-8")
    print()
    print(report.summary_table(list(results)))
    print()
    for result in results:
        print("\n".join(report.comparison(result, ours, baselines)))
    if dialogue:
        print("\n" + dialogue.split("\n\nFailed turns:")[0])
    print(f"\nreport: {_shown(args.out / 'report.md')} ({time.monotonic() - started:.0f} s)")
    return 0


def _rasa_systems(known: Catalogue, notes: list[str]) -> list[System]:
    """Our trained model and the DIET baseline (each trained first if stale), with rapidfuzz between
    them so that the report's columns read: ours, ours through Rasa, then the baselines."""
    env = serve.rasa_env(serve.default_ports())
    os.environ.update({key: env[key] for key in ("TF_CPP_MIN_LOG_LEVEL", "TRIAGE_SPACY_MODEL")})
    stale = not (
        serve.MODEL.is_file()
        and serve.FINGERPRINT.is_file()
        and serve.FINGERPRINT.read_text().strip() == serve.inputs_digest()
    )
    clock = time.monotonic()
    model = serve.ensure_model(env)
    ours_s = time.monotonic() - clock
    print("DIET baseline: training if stale ...", flush=True)
    trained = diet.ensure_model(known, env)
    print(f"DIET baseline: {_training(trained.seconds, trained.cached)}", flush=True)
    notes.append(
        f"Our Rasa model (`config.yml`, `bot/data/`): {_training(ours_s, not stale)}. DIET baseline: "
        f"{trained.examples} training examples generated from the catalogue's phrases alone "
        f"(`build/eval/diet/nlu.yml`); DIET with {diet.EPOCHS} epochs and {diet.TRANSFORMER_LAYERS} transformer "
        f"layer of {diet.TRANSFORMER_SIZE} units (Rasa's defaults are 300 epochs and 2 layers of 256, about "
        f"25 s an epoch here) so that it trains in minutes on two cores; {_training(trained.seconds, trained.cached)}."
    )
    _quiet()
    return [RasaNLU(model), FuzzyBaseline(known), DietBaseline(trained.model, known)]


def _unnamed_spans(results: list[report.SetResult], terms: set[str]) -> str:
    """How often DIET found a span that EntitySynonymMapper could not name (a wording not in its data)."""
    counts = []
    for result in results:
        found = [value for p in result.predictions[DietBaseline.name] for value in p.terms]
        unnamed = sum(value not in terms for value in found)
        counts.append(f"{unnamed} of its {len(found)} spans on the {result.name} set")
    return f"DIET found spans that EntitySynonymMapper could not name as a catalogue term: {'; '.join(counts)}."


def _training(seconds: float, cached: bool) -> str:
    return "up to date, not retrained" if cached else f"trained in {seconds:.0f} s"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(serve.ROOT))
    except ValueError:
        return os.path.relpath(path.resolve(), serve.ROOT)


def _quiet() -> None:
    """Rasa logs every parse at debug level through structlog, and warns on load about the synonyms two
    terms share ("can't breathe" is the severe form of two breathing terms): neither belongs in a report."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import rasa.core.agent  # noqa: F401  (a library it imports puts a "once" filter first; set ours after)
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("rasa", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
