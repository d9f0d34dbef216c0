"""The care-team app reads each conversation from Rasa's own tracker store tables, on SQLite and on
PostgreSQL, with the matched words marked; `TRIAGE_DB_URL` moves the tracker store with everything else."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.careteam.transcript import highlight, transcript
from bot.database import create_engine


def test_highlight_marks_the_matched_words_and_keeps_the_rest() -> None:
    text = "my daughter had a seizure and is very sleepy"
    symptoms = [
        {"term": "less alert", "start": 38, "end": 44},
        {"term": "seizures", "start": 18, "end": 25},
        {"term": "broken", "start": 40, "end": 99},  # past the end: ignored
        {"term": "overlapping", "start": 20, "end": 30},  # overlaps an earlier mark: ignored
    ]
    pieces = highlight(text, symptoms)
    assert "".join(p.text for p in pieces) == text
    assert [(p.text, p.symptom["term"]) for p in pieces if p.symptom] == [
        ("seizure", "seizures"),
        ("sleepy", "less alert"),
    ]


def test_a_missing_tracker_table_is_an_empty_transcript(tmp_path: Path) -> None:
    assert transcript(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), "anyone") == []


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'triage.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_the_transcript_comes_from_the_tracker_store(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import BotUttered, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from bot.tracker_store import TriageSQLTrackerStore

    monkeypatch.setenv("TRIAGE_DB_URL", database)
    store = TriageSQLTrackerStore(Domain.empty(), dialect="sqlite", db="ignored-when-a-url-is-set.db")
    assert str(store.engine.url).split("://")[0] == database.split("://")[0]
    triage = {"level": "call_now", "symptoms": [{"term": "fever", "level": "call_now", "start": 10, "end": 13}]}
    tracker = DialogueStateTracker.from_events(
        "parent-7",
        [
            UserUttered("my son is hot", parse_data={"message_id": "m-1"}),
            BotUttered("Call your care team right away."),
            BotUttered(data={"custom": {"triage": triage}}),
            UserUttered("he has a fever", parse_data={"message_id": "m-2"}),
        ],
    )
    asyncio.run(store.save(tracker))
    turns = transcript(create_engine(database), "parent-7")
    assert [(t.speaker, t.text) for t in turns] == [
        ("patient", "my son is hot"),
        ("assistant", "Call your care team right away."),
        ("patient", "he has a fever"),
    ]
    # The triage object after an answer marks the message it answers; a message not yet answered has none.
    assert turns[0].triage == triage
    assert [p.text for p in turns[0].pieces if p.symptom] == ["hot"]
    assert turns[2].triage is None
    assert transcript(create_engine(database), "someone-else") == []
