"""The REST benchmark (tools/bench_rest.py) cannot lie: a refused request, an empty reply, a reply without
text or without the triage object fails it, and so does a missed target (issue 6: it once printed
"5.97x ok" while all 200 requests had been refused with 429). The figures themselves are `make bench`'s."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Assistant
from tools.bench_rest import (
    TARGET_P95_MS,
    TURN_WINDOWS,
    Run,
    Target,
    check_reply,
    conversations_of,
    interleaved,
    load,
    verdict,
)

TRIAGE: dict[str, Any] = {"level": "call_now", "symptoms": [], "temperature": None}
GOOD: list[dict[str, Any]] = [
    {"recipient_id": "abc", "text": "Call your care team."},
    {"recipient_id": "abc", "custom": {"triage": TRIAGE}},
]


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (429, GOOD, "HTTP 429"),
        (500, None, "HTTP 500"),
        (200, [], "not a non-empty list"),
        (200, {"error": "x"}, "not a non-empty list"),
        (200, [{"recipient_id": "abc", "custom": {"triage": TRIAGE}}], "no text"),
        (200, [{"recipient_id": "abc", "text": "  "}, GOOD[1]], "no text"),
        (200, [GOOD[0]], "no triage object"),
        (200, [GOOD[0], {"recipient_id": "abc", "custom": {"triage": {"level": "fine"}}}], "no triage object"),
        (200, [GOOD[0], {**GOOD[1], "recipient_id": "other"}], "not for one recipient"),
        (200, GOOD, ""),
    ],
)
def test_a_reply_counts_only_when_it_is_a_full_answer(status: int, body: Any, problem: str) -> None:
    found, recipient = check_reply(status, body, triage=True)
    assert (problem in found) if problem else found == ""
    if not problem:
        assert recipient == "abc"  # the id the next message is sent under


def test_the_stock_assistant_needs_text_but_no_triage_object() -> None:
    assert check_reply(200, [GOOD[0]], triage=False) == ("", "abc")
    assert check_reply(200, [{"recipient_id": "abc"}], triage=False)[0] == "no text in the reply"


def run(name: str, concurrency: int, rate: float, latency_s: float = 0.03, failures: int = 0) -> Run:
    count = 200
    return Run(name, concurrency, messages=count, elapsed_s=count / rate, latencies_s=[latency_s] * count,
               failures=[f"failure {n}" for n in range(failures)])  # fmt: skip


def long(name: str, first_s: float, last_s: float) -> Run:
    """A turn cost run whose last ten turns took `last_s` while fresh conversations took `first_s`."""
    turns = TURN_WINDOWS[-1][1]
    latencies = [first_s] * (turns - 10) + [last_s] * 10
    return Run(name, 1, messages=turns, elapsed_s=sum(latencies), latencies_s=latencies, reference_s=[first_s] * turns)


def test_any_failed_reply_fails_the_benchmark_however_fast_it_was() -> None:
    best = [run("ours", 1, 200.0, failures=200), run("ours", 8, 300.0), run("stock", 1, 30.0), run("stock", 8, 40.0)]
    problems = verdict(best, best, [long("ours", 0.03, 0.03)], "ours", "stock")
    assert problems and problems[0].startswith("200 replies failed their checks")


def test_missed_targets_fail_the_benchmark_and_met_ones_pass() -> None:
    good = [run("ours", 1, 40.0), run("ours", 8, 50.0), run("stock", 1, 35.0), run("stock", 8, 45.0)]
    assert verdict(good, good, [long("ours", 0.030, 0.040)], "ours", "stock") == []
    lost = long("ours", 0.030, 0.040)
    lost.reference_s.pop()
    assert verdict(good, good, [lost], "ours", "stock") == ["a run lost track of some of its messages"]
    slow = [run("ours", 1, 30.0), *good[1:]]
    assert "throughput at concurrency 1 is 0.86x" in verdict(slow, slow, [], "ours", "stock")[0]
    late = verdict(good, good, [long("ours", 0.030, 0.050)], "ours", "stock")
    assert late == [f"turn {TURN_WINDOWS[-1][1]} costs 1.67x turn 1 (target <= 1.5x)"]
    laggy = [run("ours", 1, 40.0, latency_s=TARGET_P95_MS / 1000), *good[1:]]
    assert "p95 at concurrency 1" in verdict(laggy, laggy, [], "ours", "stock")[0]


@pytest.mark.integration
def test_a_run_against_the_assistant_counts_every_refused_request(assistant: Assistant) -> None:
    """The assistant's per-sender limit (20 a minute) refuses the end of a 25-message conversation with 429:
    the run must report those, not count them as fast answers."""
    target = Target("triage assistant", f"http://127.0.0.1:{assistant.ports.rasa}/webhooks/rest/webhook", triage=True)
    texts = ["I have a fever", "my mouth is dry", "hello"] * 8 + ["thank you"]
    refused = asyncio.run(load(target, [texts], 1, "bench-limit"))
    assert len(refused.latencies_s) == 25
    assert len(refused.failures) >= 5 and all("HTTP 429" in failure for failure in refused.failures)
    assert verdict([refused], [refused], [], "triage assistant", "stock")[0].startswith(
        f"{len(refused.failures)} replies failed"
    )


@pytest.mark.integration
def test_a_run_against_the_assistant_passes_when_every_reply_is_a_full_answer(assistant: Assistant) -> None:
    target = Target("triage assistant", f"http://127.0.0.1:{assistant.ports.rasa}/webhooks/rest/webhook", triage=True)
    texts = ["hello", "I have a rash", "temp 38.5", "thanks", "bye", "my son threw up"]
    done = asyncio.run(load(target, conversations_of(texts, 3), 2, "bench-ok"))
    assert done.failures == [] and len(done.latencies_s) == 6 and done.messages_per_s > 0
    paired = asyncio.run(interleaved(target, texts[:4], texts[2:], "bench-long"))
    assert paired.failures == [] and len(paired.latencies_s) == len(paired.reference_s) == 4
