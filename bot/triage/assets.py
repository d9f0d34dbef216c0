"""Builds and loads the on-disk language assets: a blank English spaCy pipeline with lookup lemmas and a
sentencizer, and the list of common English words that guards spelling correction.

No pretrained model can be downloaded here, so the set-up (`make setup`, or `python -m bot.triage.assets
--build`) writes both from the installed `spacy-lookups-data` package into `build/assets/`. If they are
missing at run time they are built on first use.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import spacy
from spacy.language import Language

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "build" / "assets"
PIPELINE = "spacy_en_lookup"
COMMON_WORDS = "common_words.txt"

#: Words at least this frequent (log probability in spaCy's English lexeme table) are real words that
#: spelling correction must leave alone: "never" (-7.1) is not "fever", "see" (-6.7) is not "pee".
#: Rarer strings such as "feaver", "diarhea" (-17.5) or "vomitting" (-16.4) may be corrected.
COMMON_WORD_LOGPROB = -14.5

#: Sentence ends: the sentencizer's defaults plus line breaks and semicolons, which SMS uses as full stops.
SENTENCE_ENDS = [".", "!", "?", "\n", "\n\n", ";", "…", "。", "！", "？"]


def assets_dir() -> Path:
    return Path(os.environ.get("TRIAGE_ASSETS_DIR", DEFAULT_DIR))


def build(target: Path | None = None) -> Path:
    """Writes the pipeline and the common-word list into `target` atomically; returns `target`."""
    folder = target or assets_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".assets-", dir=folder.parent))
    try:
        nlp = spacy.blank("en")
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        nlp.add_pipe("sentencizer", config={"punct_chars": SENTENCE_ENDS})
        nlp.initialize()
        nlp.to_disk(scratch / PIPELINE)
        probabilities = _lookups_table("en_lexeme_prob")
        common = sorted(word for word, logprob in probabilities.items() if logprob >= COMMON_WORD_LOGPROB)
        (scratch / COMMON_WORDS).write_text("\n".join(common) + "\n", encoding="utf-8")
        (scratch / ".built").write_text(spacy.__version__ + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        scratch.rename(folder)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    return folder


def load_pipeline(folder: Path | None = None) -> Language:
    path = _ensure(folder) / PIPELINE
    return spacy.load(path)


def load_common_words(folder: Path | None = None) -> frozenset[str]:
    path = _ensure(folder) / COMMON_WORDS
    return frozenset(path.read_text(encoding="utf-8").split())


def lookups_table(name: str) -> dict[str, str]:
    """A small table of `spacy-lookups-data` (such as `en_lexeme_norm`, British to US spelling)."""
    return {str(key): str(value) for key, value in _lookups_table(name).items()}


def _lookups_table(name: str) -> dict[str, object]:
    import spacy_lookups_data

    path = Path(spacy_lookups_data.__file__).parent / "data" / f"{name}.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        table: dict[str, object] = json.load(handle)
    return table


def _ensure(folder: Path | None) -> Path:
    folder = folder or assets_dir()
    if not (folder / ".built").is_file():
        build(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="(re)build the assets")
    parser.add_argument("--dir", type=Path, default=None, help=f"target folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    folder = args.dir or assets_dir()
    if args.build or not (folder / ".built").is_file():
        build(folder)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
