"""Command line: `python -m bot.triage "message"` prints one JSON object; `--jsonl` reads {"text": ...}
lines on stdin and writes one JSON object per line; with no argument on a terminal, a prompt.

A line that cannot be read (invalid JSON or UTF-8, no "text" string) still gets one object, with level
`unclear` and an "error" saying what was wrong, so that line N of the output always answers line N of
the input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import bot

bot.block_tensorflow()

from bot.triage import Level, default_triager  # noqa: E402

#: Longest input line read in --jsonl mode; longer lines get an error object, not a crash.
MAX_LINE_BYTES = 1_000_000


def _error(message: str) -> dict[str, Any]:
    return {
        "level": Level.UNCLEAR.value,
        "reason": message,
        "symptoms": [],
        "excluded": [],
        "temperature": None,
        "error": message,
    }


def _answer_line(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_LINE_BYTES:
        return _error(f"line longer than {MAX_LINE_BYTES} bytes; not read")
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _error("line is not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _error(f"line is not valid JSON ({exc.msg})")
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return _error('line must be a JSON object with a "text" string')
    return default_triager().triage(record["text"]).to_dict()


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.triage", description="Triage a patient message.")
    parser.add_argument("text", nargs="?", help="the message (omit to use --jsonl or the prompt)")
    parser.add_argument("--jsonl", action="store_true", help='read {"text": ...} lines on stdin')
    parser.add_argument("--pretty", action="store_true", help="indent the JSON")
    args = parser.parse_args(argv)
    if args.jsonl:
        for raw in sys.stdin.buffer:
            line = raw.strip()
            if line:
                _print(_answer_line(line))
                sys.stdout.flush()
        return 0
    if args.text is not None:
        result = default_triager().triage(args.text).to_dict()
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2 if args.pretty else None) + "\n")
        return 0
    return _prompt()


def _prompt() -> int:
    triager = default_triager()
    print("Type how you feel (Ctrl-D to quit).")
    while True:
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        result = triager.triage(text)
        print(f"{result.level.value}: {result.reason}")
        for symptom in result.symptoms:
            print(f"  - {symptom.term} [{symptom.level.value}] {symptom.reason}")


if __name__ == "__main__":
    raise SystemExit(main())
