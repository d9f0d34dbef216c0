"""The conversation evaluation: multi-turn conversations (`eval/conversations.jsonl`, written before the
dialogue was tuned) sent turn by turn to the real servers over the REST webhook, each turn scored on the
level of its reply's triage object and on what the reply must and must not say. Reported per pattern and
per language.

One line per conversation: {"id", "language", "pattern", "turns": [{"text", "level", "must_say",
"must_not_say"}]}; `level` "any" checks nothing of the level. Every turn is a fresh request in its own
conversation (a conversation id the server issues); a request that fails counts as a failed turn.
"""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import serve

CONVERSATIONS = serve.ROOT / "eval" / "conversations.jsonl"


@dataclass(frozen=True)
class Turn:
    text: str
    level: str
    must_say: tuple[str, ...]
    must_not_say: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    id: str
    language: str
    pattern: str
    turns: tuple[Turn, ...]


@dataclass
class TurnResult:
    conversation: str
    index: int
    text: str
    expected: str
    level: str
    reply: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load(path: Path = CONVERSATIONS) -> list[Conversation]:
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            turns = tuple(
                Turn(t["text"], t["level"], tuple(t.get("must_say", ())), tuple(t.get("must_not_say", ())))
                for t in data["turns"]
            )
            conversations.append(Conversation(data["id"], data["language"], data["pattern"], turns))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}, line {number}: not a conversation ({error})") from error
    return conversations


class Client:
    """A patient talking to the REST webhook under the conversation id the server issues."""

    def __init__(self, base: str) -> None:
        self._base = base

    def session(self) -> str:
        answer = self._post("/webhooks/rest/session", {})
        return str(answer["sender"])

    def say(self, sender: str, text: str) -> tuple[str, dict[str, Any]]:
        messages = self._post("/webhooks/rest/webhook", {"sender": sender, "message": text})
        texts = "\n".join(m["text"] for m in messages if "text" in m)
        triage = next((m["custom"]["triage"] for m in messages if "triage" in (m.get("custom") or {})), None)
        if triage is None:
            raise RuntimeError("the reply carries no triage object")
        return texts, triage

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self._base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        # nosec B310: the base is the http://127.0.0.1 address of the servers this evaluation started.
        with urllib.request.urlopen(request, timeout=60) as answer:  # nosec B310
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}")
            return json.loads(answer.read())


def run(client: Client, conversations: Sequence[Conversation]) -> list[TurnResult]:
    results = []
    for conversation in conversations:
        sender = client.session()
        for index, turn in enumerate(conversation.turns):
            result = TurnResult(conversation.id, index, turn.text, turn.level, "", "")
            try:
                reply, triage = client.say(sender, turn.text)
            except (OSError, RuntimeError, ValueError, urllib.error.HTTPError) as error:
                result.problems.append(f"request failed: {error}")
                results.append(result)
                continue
            result.reply, result.level = reply, str(triage.get("level"))
            lowered = reply.lower()
            if turn.level != "any" and result.level != turn.level:
                result.problems.append(f"level {result.level}, expected {turn.level}")
            result.problems += [f"does not say {said!r}" for said in turn.must_say if said.lower() not in lowered]
            result.problems += [f"says {said!r}" for said in turn.must_not_say if said.lower() in lowered]
            results.append(result)
    return results


@contextmanager
def running_servers() -> Iterator[Client]:
    """The action and Rasa servers on free loopback ports with a throwaway database, as `make run` starts
    them (the rate limits off: one client sends every conversation)."""
    with tempfile.TemporaryDirectory(prefix="triage-conversations-") as scratch:
        folder = Path(scratch)
        ports = serve.Ports(rasa=_free_port(), actions=_free_port(), careteam=_free_port())
        env = serve.rasa_env(ports, db=folder / "conversations.db")
        env.update({"TRIAGE_RATE_PER_SENDER": "0", "TRIAGE_RATE_PER_ADDRESS": "0",
                    "TRIAGE_SESSION_SECRET_FILE": str(folder / "session-secret")})  # fmt: skip
        actions = serve.start_actions(ports, env, folder / "actions.log")
        try:
            rasa = serve.start_rasa(ports, env, folder / "rasa.log")
            try:
                yield Client(f"http://127.0.0.1:{ports.rasa}")
            finally:
                serve.stop(rasa)
        finally:
            serve.stop(actions)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def report(conversations: Sequence[Conversation], results: Sequence[TurnResult]) -> str:
    """Markdown: turns and whole conversations right, per pattern and language, then every failed turn."""
    by_id = {c.id: c for c in conversations}
    turns: dict[tuple[str, str], list[bool]] = defaultdict(list)
    whole: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for result in results:
        conversation = by_id[result.conversation]
        key = (conversation.language, conversation.pattern)
        turns[key].append(result.ok)
        whole[key][conversation.id] = whole[key].get(conversation.id, True) and result.ok
    lines = [
        "| language | pattern | conversations right | turns right |",
        "|---|---|--:|--:|",
    ]
    for key in sorted(turns):
        done = whole[key]
        lines.append(
            f"| {key[0]} | {key[1]} | {sum(done.values())} of {len(done)} | {sum(turns[key])} of {len(turns[key])} |"
        )
    for language in sorted({c.language for c in conversations}):
        keys = [key for key in turns if key[0] == language]
        right = sum(sum(whole[key].values()) for key in keys)
        total = sum(len(whole[key]) for key in keys)
        turn_right = sum(sum(turns[key]) for key in keys)
        turn_total = sum(len(turns[key]) for key in keys)
        lines.append(f"| {language} | **all** | {right} of {total} | {turn_right} of {turn_total} |")
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["", "Failed turns:", ""]
        for r in failed:
            reply = r.reply.replace("\n", " / ")[:160]
            lines.append(f"- `{r.conversation}` turn {r.index + 1} {r.text!r}: {'; '.join(r.problems)} — {reply!r}")
    return "\n".join(lines)
