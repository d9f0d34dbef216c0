"""The language assets (bot/triage/assets.py, bot/triage/lemmas.py): the compact lemma tables answer as the
spaCy lookup tables they replace, for every form and for unknown words; an asset folder written by an older
version is rebuilt, keeping the semantic matcher's cached vectors."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from spacy.lookups import Lookups, Table

from bot.triage import assets, encoder_table, lemmas
from bot.triage.lemmas import LemmaTable


@pytest.fixture(scope="module")
def forms() -> dict[str, str]:
    """The folded Spanish forms and lemmas exactly as the build reads them."""
    lemmas: dict[str, str] = {}
    for word, lemma in assets._lookups_table("es_lemma_lookup").items():
        lemmas.setdefault(assets.fold_accents(str(word)), assets.fold_accents(str(lemma)))
    return lemmas


def unknown_words(known: dict[str, str] | Table) -> list[str]:
    rng = random.Random(13)
    letters = string.ascii_lowercase + "ñü"
    made = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 14))) for _ in range(100_000)]
    # English words, spaCy's reserved symbol names (hashed differently), the empty word, and near misses.
    odd = ["", "fever", "the", "noun", "NOUN", "nsubj", "ROOT", "mark", "dep", "neg", "x", "ñ", " ", "vómito"]
    words = [str(word) for word in known][:20_000]
    near = [word + "zz" for word in words] + [word.upper() for word in words[:2_000]] + ["a\nb", "ä", "\r"]
    return made + odd + near


def test_the_compact_spanish_lemmas_answer_as_the_spacy_table_for_every_word(
    tmp_path: Path, forms: dict[str, str]
) -> None:
    spacy_table = Table("lemma_lookup", forms)
    lemmas.write(spacy_table, tmp_path, "spanish")
    compact = LemmaTable.load(tmp_path, "spanish")
    words = [*forms, *unknown_words(forms)]
    differ = [w for w in words if (w in compact) != (w in spacy_table) or compact.get(w, w) != spacy_table.get(w, w)]
    assert differ == []
    assert sum(w in compact for w in forms) == len(forms) > 400_000


def test_the_compact_english_lemmas_answer_as_the_pipelines_table_for_every_word() -> None:
    folder = assets._ensure(None)
    spacy_table = Lookups().from_disk(folder / assets.PIPELINE / "lemmatizer" / "lookups").get_table("lemma_lookup")
    _, lemma = assets.load_core_pipeline()
    english = list(assets.lookups_table("en_lemma_lookup"))
    words = [*english, *unknown_words(spacy_table), *assets.load_common_words()]
    assert len(english) > 40_000
    assert [w for w in words if lemma(w) != str(spacy_table.get(w, w))] == []


def test_the_built_spanish_lemmas_are_the_folded_package_table(forms: dict[str, str]) -> None:
    compact = LemmaTable.load(assets._ensure(None), assets.SPANISH_LEMMAS)
    sample = random.Random(5).sample(sorted(forms), 20_000)
    assert [compact.get(w, "?") for w in sample] == [forms[w] for w in sample]
    assert compact.get("vomito", "?") == "vomitar" and "zzzq" not in compact


def test_an_asset_folder_of_another_version_or_word_package_is_not_current(tmp_path: Path) -> None:
    (tmp_path / ".built").write_text(assets._stamp().replace(f"assets {assets.VERSION},", "assets 3,"))
    assert not assets.is_current(tmp_path)
    (tmp_path / ".built").write_text(assets._stamp().replace("spacy-lookups-data ", "spacy-lookups-data 0."))
    assert not assets.is_current(tmp_path)
    (tmp_path / ".built").write_text(assets._stamp())
    assert assets.is_current(tmp_path)


def test_a_rebuild_writes_every_asset_and_keeps_the_cached_phrase_vectors(tmp_path: Path) -> None:
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / ".built").write_text("assets 5, spaCy 3.4.4\n")  # an older stamp
    (folder / "spanish_lemmas").mkdir()  # the old spaCy table's folder
    (folder / "semantic-0123.npy").write_bytes(b"cached vectors")
    assets._ensure(folder)
    assert assets.is_current(folder)
    assert (folder / "semantic-0123.npy").read_bytes() == b"cached vectors"
    assert not (folder / "spanish_lemmas").exists()
    names = [f"{assets.SPANISH_LEMMAS}.npz", f"{assets.ENGLISH_LEMMAS}.txt", assets.COMMON_WORDS, encoder_table.TABLE]
    for name in names:
        assert (folder / name).is_file(), name
    assert encoder_table.open_checked(folder / encoder_table.TABLE) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["assets"]  # no scratch folder left behind


def test_the_spanish_pipeline_keeps_function_words_and_unknown_words(forms: dict[str, str]) -> None:
    _, lemma, _, is_spanish = assets.load_spanish_pipeline()
    function_words = assets.spanish_stop_words()
    assert {"como", "fue"} <= function_words
    for word in ["fiebre", "vomito", "como", "fue", "dolor", "xyzzy", *function_words]:
        if word in function_words:
            assert lemma(word) == word and is_spanish(word)
        else:
            assert lemma(word) == forms.get(word, word) and is_spanish(word) == (word in forms)
