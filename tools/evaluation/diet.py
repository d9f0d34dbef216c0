"""The DIET baseline: Rasa's own entity extraction, trained without the SymptomExtractor.

Training examples come from the catalogue's phrases only (term, other monograph wordings, synonyms,
severe synonyms), never from the held-out phrases or any test message: each phrase is rendered once
(a `{group}` becomes one of its words, a ` ... ` gap zero to two filler words), set in a neutral
frame ("I've got ... today") and annotated as a `symptom` entity whose value is the catalogue term;
some examples join two phrases, and some deny one (intent `deny`, no entity) so that DIET can learn
that "no fever" is not a fever. The project's other intents come from `bot/data/nlu.yml` unchanged
(retrieval intents `faq/*` as one `faq` intent, since this pipeline has no ResponseSelector); its
`report_symptom` examples are left out, as they carry no entity annotations. `EntitySynonymMapper`
turns an extracted span seen in training into its term.

The pipeline is the project's (same spaCy tokens and count-vector features) with DIET's entity
recognition on, made smaller than Rasa's default (see `EPOCHS`) to train in about two minutes on two cores.
The model is cached under `build/eval/diet/` and retrained only when its data or config change.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.triage.catalogue import GAP, Catalogue, Entry

ROOT = Path(__file__).resolve().parents[2]
NLU_DATA = ROOT / "bot" / "data" / "nlu.yml"
WORKDIR = ROOT / "build" / "eval" / "diet"
MODEL_NAME = "diet"
ENTITY = "symptom"
#: Rasa's defaults are 300 epochs and two transformer layers of 256 units: about 25 s an epoch on this
#: data on two cores. One layer of 128 units and 12 epochs train in about two minutes; 40 epochs (four
#: minutes) did no better on the development set (term recall 26 % against 37 %).
EPOCHS = 12
TRANSFORMER_LAYERS = 1
TRANSFORMER_SIZE = 128
SEED = 13
#: Shares of the catalogue's phrases also used in a two-symptom example and in a denial.
PAIR_SHARE = 0.2
DENIAL_SHARE = 0.15

_FRAMES = (
    "{}",
    "{} today",
    "I've got {}",
    "I have {}",
    "my son has {}",
    "she's got {}",
    "hi, {} since last night",
    "{} this morning",
    "{} again, what should I do?",
    "I think I have {}",
    "my daughter has {} since yesterday",
    "{} after the infusion",
)
_DENIALS = ("no {}", "no {} today", "not {} anymore", "I don't have {}", "{} has gone away", "no {} or anything")
_FILLERS = ((), ("really",), ("is",), ("feels",), ("is so",), ("a bit",))
_LETTER = re.compile(r"[a-z]")
_MARKUP = re.compile(r"[\[\]\(\)\{\}]")
_CONFIG = """\
# The DIET baseline (tools/evaluation/diet.py): the project's tokens and features, DIET with entity
# recognition, and no SymptomExtractor.
recipe: default.v1
assistant_id: diet_baseline
language: en
pipeline:
  - name: SpacyNLP
    model: ${{TRIAGE_SPACY_MODEL}}
  - name: SpacyTokenizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 2
    max_ngram: 4
  - name: DIETClassifier
    epochs: {epochs}
    random_seed: 42
    constrain_similarities: true
    entity_recognition: true
    number_of_transformer_layers: {layers}
    transformer_size: {size}
  - name: EntitySynonymMapper
"""


@dataclass(frozen=True)
class Trained:
    """The baseline's model, how many examples it learnt from, and how long training took (0 if cached)."""

    model: Path
    examples: int
    seconds: float
    cached: bool


def render(phrase: str, groups: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    """One concrete wording of a catalogue phrase."""
    parts: list[str] = []
    for number, part in enumerate(phrase.split(GAP)):
        if number:
            parts.extend(rng.choice(_FILLERS))
        for word in part.split():
            if word.startswith("{") and word.endswith("}"):
                parts.append(rng.choice(groups[word[1:-1]]))
            else:
                parts.append(word)
    return " ".join(parts)


def annotated(text: str, term: str) -> str:
    return f"[{text}]{json.dumps({'entity': ENTITY, 'value': term})}"


def catalogue_examples(catalogue: Catalogue, seed: int = SEED) -> tuple[list[str], list[str]]:
    """(symptom reports with annotated entities, denials without entities) from the catalogue alone."""
    rng = random.Random(seed)
    wordings: list[tuple[str, Entry]] = []
    for entry in catalogue.entries:
        for phrase in dict.fromkeys((entry.term, *entry.also_named, *entry.synonyms, *entry.severe_synonyms)):
            text = render(phrase, catalogue.groups, rng)
            # Rasa's markup uses brackets and braces; a phrase without letters (an emoji) has no token.
            if _LETTER.search(text) and not _MARKUP.search(text):
                wordings.append((text, entry))
    reports = [rng.choice(_FRAMES).format(annotated(text, entry.term)) for text, entry in wordings]
    for _ in range(int(len(wordings) * PAIR_SHARE)):
        (first, one), (second, other) = rng.sample(wordings, 2)
        pair = f"{annotated(first, one.term)} and {annotated(second, other.term)}"
        reports.append(rng.choice(_FRAMES).format(pair))
    denials = [rng.choice(_DENIALS).format(text) for text, _ in rng.sample(wordings, int(len(wordings) * DENIAL_SHARE))]
    return reports, denials


def training_data(catalogue: Catalogue, nlu_path: Path = NLU_DATA) -> tuple[str, int]:
    """The NLU training file (Rasa YAML) and its number of examples."""
    reports, denials = catalogue_examples(catalogue)
    intents: dict[str, list[str]] = {"report_symptom": reports, "deny": denials}
    project = yaml.safe_load(nlu_path.read_text(encoding="utf-8"))
    for block in project.get("nlu", []):
        intent = str(block.get("intent", ""))
        if not intent or intent == "report_symptom":
            continue
        examples = [line[2:].strip() for line in str(block["examples"]).splitlines() if line.startswith("- ")]
        intents.setdefault(intent.split("/")[0], []).extend(examples)
    lines = ['version: "3.1"', "nlu:"]
    for intent, examples in intents.items():
        lines += [f"  - intent: {intent}", "    examples: |"]
        lines += [f"      - {' '.join(example.split())}" for example in examples]
    return "\n".join(lines) + "\n", sum(len(examples) for examples in intents.values())


def config(epochs: int = EPOCHS) -> str:
    return _CONFIG.format(epochs=epochs, layers=TRANSFORMER_LAYERS, size=TRANSFORMER_SIZE)


def ensure_model(catalogue: Catalogue, env: dict[str, str], epochs: int = EPOCHS, workdir: Path = WORKDIR) -> Trained:
    """Writes the baseline's data and config under `workdir` and trains it unless a model for exactly
    these inputs is there."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, examples = training_data(catalogue)
    config_text = config(epochs)
    data_path, config_path = workdir / "nlu.yml", workdir / "config.yml"
    data_path.write_text(data, encoding="utf-8")
    config_path.write_text(config_text, encoding="utf-8")
    model, stamp = workdir / f"{MODEL_NAME}.tar.gz", workdir / f"{MODEL_NAME}.inputs.sha256"
    digest = hashlib.sha256((data + config_text + env.get("TRIAGE_SPACY_MODEL", "")).encode()).hexdigest()
    if model.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return Trained(model, examples, 0.0, cached=True)
    started = time.monotonic()
    rasa = Path(sys.executable).parent / "rasa"
    command = [str(rasa), "train", "nlu", "--config", str(config_path), "--nlu", str(data_path),
               "--out", str(workdir), "--fixed-model-name", MODEL_NAME]  # fmt: skip
    # Its own cache, so that the baseline's components do not crowd the project's out of Rasa's cache.
    env = {**env, "RASA_CACHE_DIRECTORY": str(workdir / "cache")}
    log = workdir / "train.log"
    # Rasa warns once per phrase that two terms share ("can't breathe"): kept in the log, not shown.
    with log.open("wb") as output:
        finished = subprocess.run(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"training the DIET baseline failed (exit {finished.returncode}); {log}:\n{tail}")
    stamp.write_text(digest + "\n")
    return Trained(model, examples, time.monotonic() - started, cached=False)
