"""Builds and loads the on-disk language assets: a blank English spaCy pipeline with lookup lemmas and a
sentencizer, and the list of common English words that guards spelling correction.

No pretrained model can be downloaded here, so the set-up (`make setup`, or `python -m bot.triage.assets
--build`) writes both from the installed `spacy-lookups-data` package into `build/assets/`, with the
lemma tables in a compact form (`bot/triage/lemmas.py`), the Spanish words, and the sentence encoder's
embedding table (`bot/triage/encoder_table.py`). If they are missing, or were written by an older version
of this module, they are built on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import spacy
import spacy.about
from spacy.language import Language
from spacy.lookups import Lookups, Table

from bot.triage import lemmas
from bot.triage.lemmas import LemmaTable

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "build" / "assets"
PIPELINE = "spacy_en_lookup"
#: The pipeline's lemma lookups as a compact `LemmaTable` (the pipeline keeps its own: Rasa loads it, tools/serve.py).
ENGLISH_LEMMAS = "english_lemmas"
#: Spanish: lemma lookups (accents folded, as the matcher sees text) and common words, from the same package.
SPANISH_LEMMAS = "spanish_lemmas"
SPANISH_COMMON_WORDS = "spanish_common_words.txt"
#: Bump when what `build` writes changes, so that older asset folders are rebuilt on first use.
VERSION = "6"
COMMON_WORDS = "common_words.txt"
FOREIGN_WORDS = "foreign_function_words.txt"

#: Languages whose function words ("de", "à", "und", "ng") mark a message the assistant cannot read.
#: spaCy ships their stop-word lists, so no download is needed.
OTHER_LANGUAGES = ("es", "fr", "de", "pt", "it", "nl", "pl", "tr", "ro", "id", "tl", "vi", "sv", "da", "nb", "fi",
                   "hu", "cs", "hr", "ca")  # fmt: skip
#: Words at least this frequent in English are never counted as foreign ("me", "son", "van").
ENGLISH_WORD_LOGPROB = -11.0

#: Words at least this frequent (log probability in spaCy's English lexeme table) are real words that
#: spelling correction must leave alone: "never" (-7.1) is not "fever", "see" (-6.7) is not "pee".
#: Rarer strings such as "feaver", "diarhea" (-17.5) or "vomitting" (-16.4) may be corrected.
COMMON_WORD_LOGPROB = -14.5

#: Sentence ends: the sentencizer's defaults plus line breaks and semicolons, which SMS uses as full stops.
SENTENCE_ENDS = [".", "!", "?", "\n", "\n\n", ";", "…", "。", "！", "？"]


def assets_dir() -> Path:
    return Path(os.environ.get("TRIAGE_ASSETS_DIR", DEFAULT_DIR))


def build(target: Path | None = None) -> Path:
    """Writes the pipeline, the word lists, the lemma tables and the encoder's derived files into `target`
    atomically; returns `target`. The semantic matcher's cached phrase vectors are kept: they are keyed by
    the encoder and the phrases, not by these assets."""
    from bot.triage import embedding  # imports the encoder package only to write its table

    folder = target or assets_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".assets-", dir=folder.parent))
    retired = scratch.with_name(scratch.name + "-retired")
    try:
        nlp = spacy.blank("en")
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        nlp.add_pipe("sentencizer", config={"punct_chars": SENTENCE_ENDS})
        nlp.initialize()
        nlp.to_disk(scratch / PIPELINE)
        saved = Lookups().from_disk(scratch / PIPELINE / "lemmatizer" / "lookups").get_table("lemma_lookup")
        lemmas.write(saved, scratch, ENGLISH_LEMMAS)
        probabilities = _lookups_table("en_lexeme_prob")
        common = sorted(word for word, logprob in probabilities.items() if logprob >= COMMON_WORD_LOGPROB)
        (scratch / COMMON_WORDS).write_text("\n".join(common) + "\n", encoding="utf-8")
        english = {word for word, logprob in probabilities.items() if logprob >= ENGLISH_WORD_LOGPROB}
        foreign = sorted(_stop_words(OTHER_LANGUAGES) - _stop_words(("en",)) - english)
        (scratch / FOREIGN_WORDS).write_text("\n".join(foreign) + "\n", encoding="utf-8")
        _build_spanish(scratch)
        # Without the checked encoder installed there is nothing to derive: semantic matching says so itself.
        with contextlib.suppress(embedding.EncoderError):
            embedding.write_derived(scratch)
        for cached in folder.glob("semantic-*.npy") if folder.is_dir() else ():
            shutil.copy2(cached, scratch / cached.name)
        (scratch / ".built").write_text(_stamp(), encoding="utf-8")
        # Two renames, so that a process starting meanwhile finds the old folder or the new one.
        if folder.exists():
            folder.rename(retired)
        scratch.rename(folder)
    finally:
        for leftover in (scratch, retired):
            if leftover.exists():
                shutil.rmtree(leftover)
    return folder


def load_core_pipeline(folder: Path | None = None) -> tuple[Language, Callable[[str], str]]:
    """The same pipeline for the triage core, built the fast way: a blank English tokenizer (its
    defaults are what was saved) plus the saved lemma table, without reading the tokenizer back from
    disk (that doubles spaCy's start-up). Returns the pipeline with a sentencizer, and the lemma lookup."""
    table = LemmaTable.load(_ensure(folder), ENGLISH_LEMMAS)
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", config={"punct_chars": SENTENCE_ENDS})

    def lemma(word: str) -> str:
        return table.get(word, word)

    return nlp, lemma


def _build_spanish(scratch: Path) -> None:
    """Spanish lemmas with accents folded on both sides (the matcher reads "vomitó" as "vomito"), and the
    common Spanish words that spelling correction must leave alone."""
    folded: dict[str, str] = {}
    for word, lemma in _lookups_table("es_lemma_lookup").items():
        folded.setdefault(fold_accents(str(word)), fold_accents(str(lemma)))
    lemmas.write(Table("lemma_lookup", folded), scratch, SPANISH_LEMMAS)
    probabilities = _lookups_table("es_lexeme_prob")
    common = sorted({fold_accents(w) for w, p in probabilities.items() if p >= COMMON_WORD_LOGPROB and " " not in w})
    (scratch / SPANISH_COMMON_WORDS).write_text("\n".join(common) + "\n", encoding="utf-8")


def fold_accents(word: str) -> str:
    """ "vomitó" -> "vomito", "niño" -> "nino": what the normaliser does to letters before matching."""
    return "".join(c for c in unicodedata.normalize("NFD", word.lower()) if not unicodedata.combining(c))


def load_spanish_pipeline(
    folder: Path | None = None,
) -> tuple[Language, Callable[[str], str], frozenset[str], Callable[[str], bool]]:
    """A blank Spanish tokenizer with a sentencizer, the folded lemma lookup, the common words, and whether
    a word is a Spanish word (a form the lemma table knows, or a function word)."""
    path = _ensure(folder)
    nlp = spacy.blank("es")
    nlp.add_pipe("sentencizer", config={"punct_chars": SENTENCE_ENDS})
    table = LemmaTable.load(path, SPANISH_LEMMAS)
    # Function words keep their form: the lookup makes "como" (like) the verb "comer" and "fue" "ir".
    keep = spanish_stop_words()

    def lemma(word: str) -> str:
        return word if word in keep else table.get(word, word)

    common = frozenset((path / SPANISH_COMMON_WORDS).read_text(encoding="utf-8").split())

    def is_spanish(word: str) -> bool:
        return word in keep or word in table

    return nlp, lemma, common, is_spanish


def spanish_stop_words() -> frozenset[str]:
    return frozenset(fold_accents(word) for word in _stop_words(("es",)))


def load_common_words(folder: Path | None = None) -> frozenset[str]:
    path = _ensure(folder) / COMMON_WORDS
    return frozenset(path.read_text(encoding="utf-8").split())


def load_foreign_words(folder: Path | None = None) -> frozenset[str]:
    path = _ensure(folder) / FOREIGN_WORDS
    return frozenset(path.read_text(encoding="utf-8").split())


def english_stop_words() -> frozenset[str]:
    return frozenset(_stop_words(("en",)))


def _stop_words(languages: tuple[str, ...]) -> set[str]:
    words: set[str] = set()
    for code in languages:
        module = importlib.import_module(f"spacy.lang.{code}.stop_words")
        words |= {word.lower() for word in module.STOP_WORDS if " " not in word}
    return words


def lookups_table(name: str) -> dict[str, str]:
    """A small table of `spacy-lookups-data` (such as `en_lexeme_norm`, British to US spelling)."""
    return {str(key): str(value) for key, value in _lookups_table(name).items()}


def _lookups_table(name: str) -> dict[str, Any]:
    import spacy_lookups_data

    path = Path(spacy_lookups_data.__file__).parent / "data" / f"{name}.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        table: dict[str, Any] = json.load(handle)
    return table


@lru_cache(maxsize=1)
def _stamp() -> str:
    """What the assets were built by: this module's version, spaCy's, and that of the package their words
    and lemmas come from (the encoder's derived files check themselves by hash)."""
    lookups = importlib.metadata.version("spacy-lookups-data")
    return f"assets {VERSION}, spaCy {spacy.about.__version__}, spacy-lookups-data {lookups}\n"


def is_current(folder: Path) -> bool:
    stamp = folder / ".built"
    return stamp.is_file() and stamp.read_text(encoding="utf-8") == _stamp()


def _ensure(folder: Path | None) -> Path:
    folder = folder or assets_dir()
    if not is_current(folder):
        build(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="(re)build the assets")
    parser.add_argument("--dir", type=Path, default=None, help=f"target folder (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    folder = args.dir or assets_dir()
    if args.build or not is_current(folder):
        build(folder)
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
