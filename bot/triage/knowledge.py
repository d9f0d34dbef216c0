"""Where the clinical data lives (`knowledge/`) and how its CSV tables are read and checked.

Every table error names the file, the row (as a spreadsheet shows it, header = row 1), the column and
what is allowed, so that a clinician editing the data can fix it without reading code.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: The knowledge folder; `TRIAGE_KNOWLEDGE_DIR` points elsewhere (tests use it for broken copies).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "knowledge"


def knowledge_dir() -> Path:
    return Path(os.environ.get("TRIAGE_KNOWLEDGE_DIR", DEFAULT_DIR))


class KnowledgeError(ValueError):
    """A knowledge file is missing or malformed; the message says where and what is allowed."""


@dataclass(frozen=True)
class Row:
    """One data row of a table, with its position for error messages."""

    path: Path
    number: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()

    def required(self, column: str) -> str:
        value = self.get(column)
        if not value:
            raise self.error(column, "is empty; a value is required")
        return value

    def choice(self, column: str, allowed: Iterable[str], *, optional: bool = False) -> str:
        value = self.get(column).lower()
        options = list(allowed)
        if (value or not optional) and value not in options:
            shown = repr(value) if value else "empty"
            raise self.error(column, f"is {shown}; allowed: {', '.join(options)}")
        return value

    def items(self, column: str, separator: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.get(column).split(separator) if part.strip())

    def error(self, column: str, problem: str) -> KnowledgeError:
        return KnowledgeError(f"{self.path}, row {self.number}, column '{column}': {problem}")


def read_table(path: Path, columns: Iterable[str]) -> Iterator[Row]:
    """Yields the rows of a UTF-8 CSV file after checking that the header has `columns`."""
    columns = tuple(columns)
    if not path.is_file():
        raise KnowledgeError(f"{path}: file not found (knowledge folder: {path.parent})")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [column for column in columns if column not in header]
            if missing:
                raise KnowledgeError(
                    f"{path}, row 1: missing column(s) {', '.join(missing)}; the header must name {', '.join(columns)}"
                )
            for number, values in enumerate(reader, start=2):
                if None in values:
                    raise KnowledgeError(
                        f"{path}, row {number}: more fields than the {len(header)} columns of the "
                        "header (quote values that contain commas)"
                    )
                if any(value is None for value in values.values()):
                    raise KnowledgeError(
                        f"{path}, row {number}: fewer fields than the {len(header)} columns of the header"
                    )
                if not any((value or "").strip() for value in values.values()):
                    continue
                yield Row(path, number, values)
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise KnowledgeError(f"{path}: not a valid CSV file ({exc})") from exc


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes `path` through a scratch file beside it, renamed into place: a reader sees the old file or the
    whole new one, never half of it; the scratch file is removed when writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
