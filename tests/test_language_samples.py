"""Language identification (bot/triage/spanish.py) keeps its decisions on messages in the languages that look
most like Spanish and on mixed English and Spanish: tests/language_samples.jsonl holds 80 such messages,
short and long, SMS style, each with the decision the identifier made when they were written ("es": read
in Spanish; "en": not). A change of lingua, of its settings or of the languages it weighs must leave them
as they are, or change them on purpose and record them again:

    PYTHONPATH=. .venv/bin/python -m tests.test_language_samples --record
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from bot.triage.spanish import default_identifier

SAMPLES = Path(__file__).with_name("language_samples.jsonl")


def samples() -> list[dict[str, str]]:
    return [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_samples_cover_the_languages_that_look_like_spanish() -> None:
    written = Counter(sample["written_in"] for sample in samples())
    assert sum(written.values()) >= 60
    for language in ("French", "German", "Portuguese", "Italian", "English and Spanish"):
        assert written[language] >= 10, language


def test_every_sample_keeps_its_recorded_decision() -> None:
    identifier = default_identifier()
    changed = [(s["text"], s["language"]) for s in samples() if identifier.language(s["text"]) != s["language"]]
    assert changed == []


def record() -> None:
    identifier = default_identifier()
    lines = [json.dumps({**s, "language": identifier.language(s["text"])}, ensure_ascii=False) for s in samples()]
    SAMPLES.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()
