"""The load test's short version against the real servers (what CI runs of `make loadtest`), and its
database check shown to catch what it is there to catch: a lost, doubled, reordered or interleaved
message, and a missing or extra escalation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.careteam.store import EscalationStore
from tests.conftest import SMS_AUTH_TOKEN, Assistant
from tools import loadtest
from tools.loadtest import Conversation, Message, Plan, Target


@pytest.mark.integration
def test_a_short_load_through_both_webhooks_loses_nothing(assistant: Assistant) -> None:
    target = Target("test", f"http://localhost:{assistant.ports.rasa}", f"sqlite:///{assistant.db}", SMS_AUTH_TOKEN)
    plan = Plan(conversations=12, messages=60, concurrency=6, sms_share=0.4, double_share=0.5, deadline_s=240)
    result = loadtest.run_against(target, plan)
    assert result["errors"] == 0, result["error_kinds"]
    assert result["database"]["problems"] == {}
    assert result["database"]["messages_stored"] == 60
    assert result["database"]["escalations_found"] == result["database"]["escalations_expected"] > 0
    assert set(result["by_channel"]) == {"web", "sms"}
    assert result["ok"]


def _database(tmp_path: Path, events: list[tuple[str, str, str | None, dict[str, str]]]) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url, future=True)
    EscalationStore(engine=engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id TEXT, type_name TEXT, action_name TEXT, data TEXT)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE sms_messages (message_sid TEXT PRIMARY KEY, status TEXT)"  # as much as the check reads
        )
        for sender, kind, action, data in events:
            connection.execute(
                sa.text("INSERT INTO events (sender_id, type_name, action_name, data) VALUES (:s, :k, :a, :d)"),
                {"s": sender, "k": kind, "a": action, "d": json.dumps(data)},
            )
    return url


def _turn(sender: str, text: str) -> list[tuple[str, str, str | None, dict[str, str]]]:
    return [(sender, "user", None, {"text": text}), (sender, "action", "action_listen", {})]


def _conversation(*texts: str, level: str = "mention") -> Conversation:
    return Conversation("a", "web", [Message(text, level) for text in texts])


def test_the_check_passes_a_clean_conversation(tmp_path: Path) -> None:
    url = _database(tmp_path, _turn("a", "one") + _turn("a", "two"))
    assert loadtest.check_database(url, [_conversation("one", "two")])["problems"] == {}


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (["one"], "messages_lost_or_doubled"),
        (["one", "two", "two"], "messages_lost_or_doubled"),
        (["two", "one"], "out_of_order"),
    ],
)
def test_the_check_finds_lost_doubled_and_reordered_messages(tmp_path: Path, stored: list[str], problem: str) -> None:
    url = _database(tmp_path, [event for text in stored for event in _turn("a", text)])
    assert problem in loadtest.check_database(url, [_conversation("one", "two")])["problems"]


def test_the_check_finds_interleaved_turns(tmp_path: Path) -> None:
    events = [("a", "user", None, {"text": "one"}), ("a", "user", None, {"text": "two"})]
    events += [("a", "action", "action_listen", {}), ("a", "action", "action_listen", {})]
    url = _database(tmp_path, events)
    assert "turns_interleaved" in loadtest.check_database(url, [_conversation("one", "two")])["problems"]


def test_the_check_finds_a_missing_or_an_extra_escalation(tmp_path: Path) -> None:
    url = _database(tmp_path, _turn("a", "fever") + _turn("a", "a rash"))
    problems = loadtest.check_database(url, [_conversation("fever", "a rash", level="call_now")])["problems"]
    assert {"escalation_count", "escalated_messages"} <= set(problems)
    EscalationStore(url).record("a", "web", "m1", "fever", {"level": "call_now", "symptoms": []})
    problems = loadtest.check_database(url, [_conversation("fever", "a rash", level="mention")])["problems"]
    assert "unexpected_escalation" in problems
