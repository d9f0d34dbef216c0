"""The command-line contract of DESIGN.md: one JSON object per message, one output line per input line,
whatever arrives on stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot.triage", *args], input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=120
    )


def test_one_message_prints_one_json_object() -> None:
    done = run(["my son has a fever of 38.9"])
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)
    assert data["level"] == "call_now"
    assert data["symptoms"][0]["term"] == "fever"
    assert data["temperature"]["band"] == "fever"
    assert b"Traceback" not in done.stderr


def test_jsonl_answers_every_line_in_order_even_bad_ones() -> None:
    lines = [
        json.dumps({"text": "he had a seizure"}).encode(),
        b"{not json",
        b"\xff\xfe\xfa not utf-8",
        json.dumps({"message": "no text field"}).encode(),
        json.dumps(["a", "list"]).encode(),
        json.dumps({"text": 42}).encode(),
        json.dumps({"text": "dry mouth"}).encode(),
        json.dumps({"text": "\u0000\u0007 control \u001b[31m characters"}).encode(),
    ]
    done = run(["--jsonl"], b"\n".join(lines) + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    answers = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [a["level"] for a in answers] == [
        "emergency",
        "unclear",
        "unclear",
        "unclear",
        "unclear",
        "unclear",
        "mention",
        "none",
    ]
    assert "not valid JSON" in answers[1]["error"]
    assert "not UTF-8" in answers[2]["error"]
    assert '"text" string' in answers[3]["error"]
    assert all("error" not in answers[i] for i in (0, 6, 7))


def test_an_oversized_line_gets_an_error_object_not_a_crash() -> None:
    huge = json.dumps({"text": "fever " * 200_000}).encode()
    done = run(["--jsonl"], huge + b"\n" + json.dumps({"text": "rash"}).encode() + b"\n")
    answers = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert answers[0]["level"] == "unclear" and "longer than" in answers[0]["error"]
    assert answers[1]["level"] == "call_now"
