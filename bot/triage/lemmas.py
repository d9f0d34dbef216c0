"""Lemma lookup tables in a compact form: what spaCy's lookup tables answer, in a tenth of their memory.

A spaCy lookup table is a Python dictionary from each form's string hash to its lemma: the 436,000
folded Spanish forms took 130 MB in memory, the 41,000 English ones 12 MB. Here a table is two arrays,
the forms' hashes (sorted) and each form's lemma as an index into the distinct lemmas, with the distinct
lemmas in one string: 12 bytes a form and the lemmas' own letters. The hash is spaCy's own
(`get_string_id`), so a word finds the same entry as in the spaCy table, or none.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np
from spacy.lookups import Table
from spacy.strings import get_string_id


class LemmaTable:
    """A form's lemma (`get`) and whether the table knows a form (`in`), as the spaCy table answers."""

    def __init__(self, forms: np.ndarray[Any, np.dtype[np.uint64]], lemmas: np.ndarray[Any, np.dtype[np.int32]],
                 names: str, starts: np.ndarray[Any, np.dtype[np.int64]]) -> None:  # fmt: skip
        """`forms` sorted; `lemmas[i]` the lemma of `forms[i]`, the text of `names` from `starts[lemma]` to
        the line break before `starts[lemma + 1]`."""
        self._forms, self._lemmas, self._names = forms, lemmas, names
        self._starts = array("q", starts.astype(np.int64).tobytes())  # 8 bytes an entry, not a Python int's 36
        self._last = len(forms) - 1

    @classmethod
    def load(cls, folder: Path, stem: str) -> LemmaTable:
        """The table written by `write` as `stem`.npz and `stem`.txt in `folder`."""
        with np.load(folder / f"{stem}.npz", allow_pickle=False) as arrays:
            forms, lemmas, starts = arrays["forms"], arrays["lemmas"], arrays["starts"]
        with (folder / f"{stem}.txt").open(encoding="utf-8", newline="") as text:  # offsets count every character
            names = text.read()
        return cls(forms, lemmas, names, starts)

    def _row(self, word: str) -> int:
        """The row of `word`, or -1. The hash goes in as a uint64 scalar: a Python int would make numpy
        compare in float64, where neighbouring hashes are equal."""
        key = np.uint64(get_string_id(word))
        row = int(self._forms.searchsorted(key))
        return row if row <= self._last and self._forms[row] == key else -1

    def get(self, word: str, default: str) -> str:
        row = self._row(word)
        if row < 0:
            return default
        lemma = int(self._lemmas[row])
        return self._names[self._starts[lemma] : self._starts[lemma + 1] - 1]

    def __contains__(self, word: str) -> bool:
        return self._row(word) >= 0


def write(table: Table, folder: Path, stem: str) -> None:
    """Writes a spaCy lookup table of strings (its keys are already the string hashes) as `stem`.npz and
    `stem`.txt in `folder`, for `LemmaTable.load`."""
    names = sorted(set(map(str, table.values())))
    if any("\n" in name or "\r" in name for name in names):
        raise ValueError(f"{stem}: a lemma holds a line break, and the lemmas are stored one a line")
    index = {name: position for position, name in enumerate(names)}
    forms = np.fromiter(table.keys(), dtype=np.uint64, count=len(table))
    lemmas = np.fromiter((index[str(name)] for name in table.values()), dtype=np.int32, count=len(table))
    starts = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum([len(name) + 1 for name in names], out=starts[1:])
    order = np.argsort(forms, kind="stable")
    np.savez(folder / f"{stem}.npz", forms=forms[order], lemmas=lemmas[order], starts=starts)
    with (folder / f"{stem}.txt").open("w", encoding="utf-8", newline="") as text:
        text.write("".join(name + "\n" for name in names))
