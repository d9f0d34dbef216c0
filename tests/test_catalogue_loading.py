"""Loading the knowledge folder validates it; a broken table fails with file, row, column and the fix."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.triage import catalogue
from bot.triage.knowledge import DEFAULT_DIR, KnowledgeError


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    shutil.copytree(DEFAULT_DIR, folder)
    return folder


def edit_row(folder: Path, row_number: int, change: Callable[[dict[str, str]], None]) -> None:
    """Edits one data row of side_effects.csv (row 2 is the first data row, as a spreadsheet numbers it)."""
    path = folder / "side_effects.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    change(rows[row_number - 2])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or [])
        writer.writeheader()
        writer.writerows(rows)


def test_the_project_catalogue_loads() -> None:
    loaded = catalogue.load()
    assert len(loaded.entries) >= 70


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("level", "urgent", "allowed: mention, call_now, emergency"),
        ("level", "", "is empty"),
        ("section", "side effects", "has 'side effects'; allowed:"),
        ("syndromes", "CRS; flu", "has 'flu'; allowed: CRS"),
        ("synonyms", "", "is empty"),
        ("synonyms", "head ... ", "starts or ends with '...'"),
        ("synonyms", "{elbows} ... hurt", "unknown group {elbows}"),
        ("term", "Agitation", "lower case"),
        ("explanation", " ", "is empty"),
        ("severe_level", "mention", "below the row's level"),
    ],
)
def test_a_bad_value_names_file_row_and_column(knowledge: Path, column: str, value: str, expected: str) -> None:
    edit_row(knowledge, 2, lambda row: row.__setitem__(column, value))
    with pytest.raises(KnowledgeError) as error:
        catalogue.load(knowledge)
    message = str(error.value)
    assert str(knowledge / "side_effects.csv") in message
    assert "row 2" in message
    assert f"column '{column}'" in message
    assert expected in message


def test_a_precautions_row_below_its_section_floor_is_refused(knowledge: Path) -> None:
    edit_row(knowledge, 3, lambda row: row.__setitem__("level", "mention"))
    with pytest.raises(KnowledgeError, match=r"row 3, column 'level': is mention, below call_now"):
        catalogue.load(knowledge)


def test_a_duplicate_term_is_refused(knowledge: Path) -> None:
    edit_row(knowledge, 3, lambda row: row.__setitem__("term", "agitation"))
    with pytest.raises(KnowledgeError, match=r"row 3, column 'term': 'agitation' appears twice"):
        catalogue.load(knowledge)


def test_a_missing_column_is_named(knowledge: Path) -> None:
    path = knowledge / "side_effects.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace("severe_level", "severity")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"row 1: missing column\(s\) severe_level"):
        catalogue.load(knowledge)


def test_an_unquoted_comma_is_explained(knowledge: Path) -> None:
    path = knowledge / "side_effects.csv"
    with path.open("a", encoding="utf-8") as handle:
        handle.write("pain, in the arms,mention,,,,,arm pain,,x,y\n")
    with pytest.raises(KnowledgeError, match=r"more fields than the 9 columns .*quote values"):
        catalogue.load(knowledge)


def test_a_missing_file_is_named(knowledge: Path) -> None:
    (knowledge / "sections.csv").unlink()
    with pytest.raises(KnowledgeError, match=r"sections.csv: file not found"):
        catalogue.load(knowledge)


def test_a_binary_file_is_refused_clearly(knowledge: Path) -> None:
    (knowledge / "syndromes.csv").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(KnowledgeError, match=r"syndromes.csv: not UTF-8 text"):
        catalogue.load(knowledge)


def test_a_bad_word_group_is_named(knowledge: Path) -> None:
    path = knowledge / "word_groups.csv"
    path.write_text(path.read_text(encoding="utf-8") + "belly parts,tummy ache|gut,\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"word_groups.csv, row \d+, column 'group'"):
        catalogue.load(knowledge)
