"""The conversation evaluation's scoring (tools/evaluation/conversations.py): a turn fails on a wrong level,
a missing or forbidden phrase, or a failed request, and the report counts what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.evaluation.conversations import Conversation, Turn, load, report, run


class Replies:
    """Stands in for the REST webhook: answers each text with a fixed reply, or fails."""

    def __init__(self, answers: dict[str, tuple[str, str] | Exception]) -> None:
        self._answers = answers
        self.sessions = 0

    def session(self) -> str:
        self.sessions += 1
        return f"web:{self.sessions}"

    def say(self, sender: str, text: str) -> tuple[str, dict[str, Any]]:
        answer = self._answers[text]
        if isinstance(answer, Exception):
            raise answer
        return answer[0], {"level": answer[1]}


def conversation(*turns: Turn, pattern: str = "follow_up_question") -> Conversation:
    return Conversation("c1", "en", pattern, turns)


def test_a_turn_passes_only_with_the_level_and_the_words_expected() -> None:
    talk = conversation(
        Turn("seizure", "emergency", ("call emergency services",), ()),
        Turn("what now?", "emergency", ("call emergency services",), ("take care",)),
    )
    good = Replies({"seizure": ("Call emergency services now: 911.", "emergency"),
                    "what now?": ("Call emergency services now: 911.", "emergency")})  # fmt: skip
    assert all(result.ok for result in run(good, [talk]))
    wrong = Replies({"seizure": ("Call your doctor right away.", "call_now"),
                     "what now?": ("Take care. Call emergency services now.", "emergency")})  # fmt: skip
    first, second = run(wrong, [talk])
    assert first.problems == ["level call_now, expected emergency", "does not say 'call emergency services'"]
    assert second.problems == ["says 'take care'"]


def test_a_failed_request_is_a_failed_turn_not_a_crash() -> None:
    talk = conversation(Turn("hello", "any", (), ()))
    [result] = run(Replies({"hello": OSError("connection refused")}), [talk])
    assert not result.ok and "request failed" in result.problems[0]


def test_the_report_counts_conversations_and_turns_per_pattern() -> None:
    talk = conversation(Turn("a", "none", (), ()), Turn("b", "none", (), ()), pattern="yes_no")
    results = run(Replies({"a": ("ok", "none"), "b": ("ok", "mention")}), [talk])
    table = report([talk], results)
    assert "| en | yes_no | 0 of 1 | 1 of 2 |" in table
    assert "level mention, expected none" in table


def test_the_projects_conversations_load(tmp_path: Path) -> None:
    talks = load()
    assert len(talks) >= 40 and {c.language for c in talks} >= {"en"}
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        load(tmp_path / "bad.jsonl")
