"""Load test: simulated patients on loopback, through the REST and the SMS webhooks, then a check of the
database that nothing was lost or stored twice.

    python -m tools.loadtest                  # make loadtest: single process, then the cluster (1 and 2 replicas)
    python -m tools.loadtest --quick          # the smoke version CI runs (a few conversations)
    python -m tools.loadtest --single-only    # just the make-run deployment

Each simulated patient is one conversation: on the web (REST webhook, under the conversation id the
server issues, as the chat page keeps it) or by SMS (signed form posts to the SMS webhook, one Twilio
MessageSid per text), a few messages of mixed urgency in everyday words,
sent one after the other as a person waits for each answer; one conversation in ten also sends two
messages at the same moment, as a double tap or two parents on one phone would, which a replicated
deployment may hand to two replicas. Patients run side by side (`--concurrency`). The whole run is
bounded (`--deadline-s`): a message not answered by then counts as an error.

Afterwards the database must show: every message in the conversation store exactly once (user events),
each conversation in the order it was sent and each message answered before the next was read (an
`action_listen` between user events); every SMS stored once and answered; every patient with an
emergency, call-now or unclear message one open escalation holding exactly those messages, and no
escalation for the others. The expected level of each message comes from the triage core itself: the
load test checks the plumbing, `make eval` the judgement.

Results: printed, and written to build/loadtest/report.md and report.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import secrets
import socket
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from tools import serve

ROOT = serve.ROOT
OUT = ROOT / "build" / "loadtest"
SMS_PATH = "/webhooks/sms/webhook"
REST_PATH = "/webhooks/rest/webhook"
SESSION_PATH = "/webhooks/rest/session"
ESCALATING = {"emergency", "call_now", "unclear"}
#: Every simulated patient writes from this machine's one address: the per-address limit is off.
UNLIMITED = {"TRIAGE_RATE_PER_ADDRESS": "0"}

#: Everyday wrappers around a catalogue phrase, as patients and parents write.
_TEMPLATES = (
    "{p}",
    "my son has {p} since this morning",
    "she's got {p} today",
    "been {p} all night",
    "hi, i have {p}",
    "{p} again, is that normal?",
    "my daughter has had {p} since yesterday evening",
    "worried, he has {p}",
)
_NONE = ("hello", "hi there", "thanks", "thank you so much", "ok", "good morning", "bye")
_UNCLEAR = ("i feel off", "something is not right with him", "she just isn't herself", "my tummy feels weird")
#: Share of messages by intended level (the core's own verdict on each text is what gets checked).
_MIX = (("emergency", 0.05), ("call_now", 0.35), ("mention", 0.30), ("unclear", 0.05), ("none", 0.25))


@dataclass(frozen=True)
class Plan:
    conversations: int = 200
    messages: int = 2000
    concurrency: int = 16
    sms_share: float = 0.3
    double_share: float = 0.1  # conversations that send two messages at the same moment, once
    seed: int = 7
    deadline_s: float = 900.0


@dataclass
class Message:
    text: str
    level: str  # the core's verdict
    sid: str = ""  # SMS MessageSid
    latency_s: float = 0.0
    error: str = ""
    concurrent: bool = False


@dataclass
class Conversation:
    sender: str  # SMS: "sms:<phone>"; web: a placeholder until the server issues the conversation's id
    channel: str  # web, sms
    messages: list[Message] = field(default_factory=list)
    double_at: int = -1  # index of the first of two messages sent at once

    @property
    def phone(self) -> str:
        return self.sender.removeprefix("sms:")


@dataclass
class Target:
    name: str
    url: str  # base URL of the patient webhooks
    db_url: str
    sms_token: str


def plan_conversations(plan: Plan) -> list[Conversation]:
    """The conversations, with each message's expected level from the triage core."""
    import bot

    bot.block_tensorflow()
    from bot.triage import catalogue, default_triager

    rng = random.Random(plan.seed)
    phrases: dict[str, list[str]] = defaultdict(list)
    for entry in catalogue.load().entries:
        for synonym in entry.synonyms:
            if "{" not in synonym and " ... " not in synonym:
                phrases[entry.level.value].append(synonym)
    run = f"{int(time.time()) % 100000:05d}{rng.randrange(1000):03d}"
    conversations = []
    # Lengths vary (1 to twice the mean less one) and add up to the planned total exactly.
    mean = max(plan.messages // plan.conversations, 1)
    per = [rng.randint(1, 2 * mean - 1) for _ in range(plan.conversations)]
    while sum(per) != plan.messages:
        index = rng.randrange(plan.conversations)
        if sum(per) < plan.messages:
            per[index] += 1
        elif per[index] > 1:
            per[index] -= 1
    for index, count in enumerate(per):
        sms = rng.random() < plan.sms_share
        sender = f"sms:+1555{run}{index:04d}" if sms else f"load-{run}-{index:04d}"
        conversation = Conversation(sender, "sms" if sms else "web")
        for _ in range(count):
            intended = rng.choices([level for level, _ in _MIX], [weight for _, weight in _MIX])[0]
            if intended == "none":
                text = rng.choice(_NONE)
            elif intended == "unclear":
                text = rng.choice(_UNCLEAR)
            else:
                text = rng.choice(_TEMPLATES).format(p=rng.choice(phrases[intended]))
            conversation.messages.append(Message(text, ""))
        if count >= 2 and rng.random() < plan.double_share:
            conversation.double_at = rng.randrange(count - 1)
        conversations.append(conversation)
    triager = default_triager()
    for conversation in conversations:
        for message in conversation.messages:
            message.level = triager.triage(message.text).level.value
    return conversations


async def _send(session: aiohttp.ClientSession, target: Target, conversation: Conversation, message: Message) -> None:
    started = time.perf_counter()
    try:
        if conversation.channel == "web":
            body = {"sender": conversation.sender, "message": message.text}
            async with session.post(target.url + REST_PATH, json=body) as answer:
                replies = await answer.json(content_type=None)
                if answer.status != 200:
                    message.error = f"HTTP {answer.status}"
                elif not any("text" in reply for reply in replies):
                    message.error = "no reply text"
                elif any(reply.get("recipient_id") != conversation.sender for reply in replies):
                    message.error = "answered in another conversation"
        else:
            from twilio.request_validator import RequestValidator

            message.sid = "SM" + secrets.token_hex(16)
            fields = {"MessageSid": message.sid, "AccountSid": "AC" + "0" * 32, "From": conversation.phone,
                      "To": "+15550000000", "Body": message.text, "NumSegments": "1"}  # fmt: skip
            url = target.url + SMS_PATH
            signature = RequestValidator(target.sms_token).compute_signature(url, fields)
            async with session.post(url, data=fields, headers={"X-Twilio-Signature": signature}) as answer:
                reply = await answer.text()
                if answer.status != 200:
                    message.error = f"HTTP {answer.status}"
                elif "<Message>" not in reply:
                    message.error = "no reply text"
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        message.error = type(error).__name__
    message.latency_s = time.perf_counter() - started


async def _issued_id(session: aiohttp.ClientSession, target: Target) -> str:
    """A new web conversation id from the server (the database check keys on it)."""
    async with session.post(target.url + SESSION_PATH) as answer:
        issued = (await answer.json(content_type=None)).get("sender") if answer.status == 200 else None
    if not isinstance(issued, str):
        raise ValueError(f"no conversation id issued (HTTP {answer.status})")
    return issued


async def _patient(session: aiohttp.ClientSession, target: Target, conversation: Conversation) -> None:
    if conversation.channel == "web":
        # Asked for first, so that two messages sent at once at the start share one conversation.
        try:
            conversation.sender = await _issued_id(session, target)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            for message in conversation.messages:
                message.error = f"no conversation id: {type(error).__name__}"
            return
    index = 0
    while index < len(conversation.messages):
        if index == conversation.double_at:
            pair = conversation.messages[index : index + 2]
            for message in pair:
                message.concurrent = True
            await asyncio.gather(*(_send(session, target, conversation, m) for m in pair))
            index += 2
        else:
            await _send(session, target, conversation, conversation.messages[index])
            index += 1


async def drive(target: Target, conversations: list[Conversation], plan: Plan) -> float:
    """Sends every conversation, `plan.concurrency` patients at a time; returns the elapsed seconds."""
    queue: asyncio.Queue[Conversation] = asyncio.Queue()
    for conversation in conversations:
        queue.put_nowait(conversation)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await _patient(session, target, queue.get_nowait())

    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=plan.concurrency * 2)
    began = time.perf_counter()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        workers = [asyncio.ensure_future(worker(session)) for _ in range(plan.concurrency)]
        try:
            await asyncio.wait_for(asyncio.gather(*workers), timeout=plan.deadline_s)
        except asyncio.TimeoutError:
            for task in workers:
                task.cancel()
            for conversation in conversations:
                for message in conversation.messages:
                    if not message.latency_s and not message.error:
                        message.error = "not sent before the deadline"
    return time.perf_counter() - began


def _rows(connection: sa.engine.Connection, sql: str, names: list[str]) -> list[Any]:
    """Rows of `sql`, whose `:names` is expanded to the given list."""
    if not names:
        return []
    statement = sa.text(sql).bindparams(sa.bindparam("names", expanding=True))
    return list(connection.execute(statement, {"names": names}))


def check_database(db_url: str, conversations: list[Conversation]) -> dict[str, Any]:
    """What the database holds against what was sent; every list of problems must be empty."""
    engine = sa.create_engine(db_url, future=True)
    senders = [c.sender for c in conversations]
    sids = [m.sid for c in conversations for m in c.messages if m.sid]
    with engine.connect() as connection:
        event_rows = _rows(
            connection, "SELECT sender_id, type_name, action_name, data FROM events WHERE sender_id IN :names"
            " ORDER BY id", senders,
        )  # fmt: skip
        open_rows = _rows(
            connection, "SELECT sender_id FROM escalations WHERE sender_id IN :names AND status != 'resolved'", senders
        )
        message_rows = _rows(
            connection, "SELECT e.sender_id FROM escalation_messages m JOIN escalations e ON e.id = m.escalation_id"
            " WHERE e.sender_id IN :names", senders,
        )  # fmt: skip
        sms_rows = _rows(connection, "SELECT message_sid, status FROM sms_messages WHERE message_sid IN :names", sids)
    engine.dispose()

    events: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for sender, type_name, action_name, data in event_rows:
        events[sender].append((type_name if type_name != "action" else f"action:{action_name}", json.loads(data)))
    escalations = Counter(row[0] for row in open_rows)
    escalated_messages = Counter(row[0] for row in message_rows)
    sms: Counter[str] = Counter(row[0] for row in sms_rows)
    problems: dict[str, list[str]] = defaultdict(list)
    problems["sms_not_answered"] = [row[0] for row in sms_rows if row[1] != "answered"]
    stored = 0
    for conversation in conversations:
        sender = conversation.sender
        user_texts = [str(data.get("text")) for kind, data in events[sender] if kind == "user"]
        stored += len(user_texts)
        sent = [m.text for m in conversation.messages]
        if Counter(user_texts) != Counter(sent):
            problems["messages_lost_or_doubled"].append(f"{sender}: sent {len(sent)}, stored {len(user_texts)}")
        elif not _in_order(sent, user_texts, conversation.double_at):
            problems["out_of_order"].append(sender)
        kinds = [kind for kind, _ in events[sender] if kind in ("user", "action:action_listen")]
        if any(a == b == "user" for a, b in itertools.pairwise(kinds)):
            problems["turns_interleaved"].append(sender)
        expected = sum(1 for m in conversation.messages if m.level in ESCALATING)
        if expected and escalations[sender] != 1:
            problems["escalation_count"].append(f"{sender}: {escalations[sender]} open, expected 1")
        if not expected and escalations[sender]:
            problems["unexpected_escalation"].append(sender)
        if escalated_messages[sender] != expected:
            problems["escalated_messages"].append(f"{sender}: {escalated_messages[sender]} recorded, {expected} sent")
    problems["sms_stored"] = [f"{sid}: {sms[sid]} rows" for sid in sids if sms[sid] != 1]
    problems = {key: values for key, values in problems.items() if values}
    return {
        "messages_sent": sum(len(c.messages) for c in conversations),
        "messages_stored": stored,
        "escalations_expected": sum(1 for c in conversations if any(m.level in ESCALATING for m in c.messages)),
        "escalations_found": sum(escalations.values()),
        "problems": {key: values[:10] for key, values in problems.items()},
        "problem_count": sum(len(values) for values in problems.values()),
    }


def _in_order(sent: list[str], stored: list[str], double_at: int) -> bool:
    """Stored in the order sent, except that the two messages sent at once may be either way round."""
    if stored == sent:
        return True
    if double_at >= 0:
        swapped = list(sent)
        swapped[double_at], swapped[double_at + 1] = swapped[double_at + 1], swapped[double_at]
        return stored == swapped
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else 0.0


def summarise(name: str, conversations: list[Conversation], elapsed: float, check: dict[str, Any]) -> dict[str, Any]:
    messages = [m for c in conversations for m in c.messages]
    by_channel: dict[str, dict[str, Any]] = {}
    for channel in ("web", "sms"):
        latencies = [m.latency_s for c in conversations if c.channel == channel for m in c.messages]
        if latencies:
            by_channel[channel] = {"messages": len(latencies), "p50_ms": 1000 * statistics.median(latencies),
                                   "p95_ms": 1000 * percentile(latencies, 0.95)}  # fmt: skip
    latencies = [m.latency_s for m in messages]
    errors = Counter(m.error for m in messages if m.error)
    return {
        "target": name,
        "conversations": len(conversations),
        "messages": len(messages),
        "levels": dict(Counter(m.level for m in messages)),
        "seconds": round(elapsed, 1),
        "messages_per_s": round(len(messages) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "by_channel": by_channel,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "database": check,
        "ok": not errors and check["problem_count"] == 0,
    }


def run_against(target: Target, plan: Plan) -> dict[str, Any]:
    """Plans fresh conversations, sends them, checks the database; returns the summary."""
    conversations = plan_conversations(plan)
    elapsed = asyncio.run(drive(target, conversations, plan))
    return summarise(target.name, conversations, elapsed, check_database(target.db_url, conversations))


@contextlib.contextmanager
def single(workdir: Path) -> Iterator[Target]:
    """The make-run deployment (one Rasa process, one action server, SQLite) on free ports."""
    ports = serve.Ports(rasa=free_port(), actions=free_port(), careteam=free_port())
    db = workdir / "triage.db"
    env = serve.rasa_env(ports, db=db)
    token = secrets.token_hex(16)
    base = f"http://localhost:{ports.rasa}"
    env.update(TWILIO_AUTH_TOKEN=token, TRIAGE_SMS_PUBLIC_URL=base + SMS_PATH, **UNLIMITED)
    serve.ensure_model(env)
    with serve.running(ports, env, workdir / "logs"):
        yield Target("single process (SQLite)", base, f"sqlite:///{db}", token)


@contextlib.contextmanager
def replicated(workdir: Path, replicas: int) -> Iterator[Target]:
    """The scale-out deployment (tools/cluster.py): nginx, N Rasa replicas, PostgreSQL, Redis."""
    from tools.cluster import cluster  # type: ignore[import-not-found,unused-ignore]

    token = secrets.token_hex(16)
    with cluster(
        replicas=replicas, workdir=workdir, env_overrides={"TWILIO_AUTH_TOKEN": token, **UNLIMITED}
    ) as running:
        name = f"cluster, {replicas} Rasa replica{'s' if replicas > 1 else ''} (PostgreSQL, Redis, nginx)"
        yield Target(name, running.url, running.db_url, token)


def report(results: list[dict[str, Any]], plan: Plan) -> str:
    lines = [
        "# Load test",
        "",
        f"Plan: {plan.conversations} conversations, {plan.messages} messages, {plan.concurrency} patients at a "
        f"time, {plan.sms_share:.0%} by SMS, {plan.double_share:.0%} of conversations send two messages at once.",
        "",
        "| deployment | messages | msg/s | p50 ms | p95 ms | p99 ms | errors | stored | escalations | problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        db = r["database"]
        lines.append(
            f"| {r['target']} | {r['messages']} | {r['messages_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['p99_ms']} | {r['errors']} | {db['messages_stored']}/{db['messages_sent']} | "
            f"{db['escalations_found']}/{db['escalations_expected']} | {db['problem_count']} |"
        )
    lines.append("")
    for r in results:
        if not r["ok"]:
            lines.append(f"- {r['target']}: errors {r['error_kinds']}, problems {r['database']['problems']}")
    replicas = [r for r in results if r["target"].startswith("cluster")]
    if len(replicas) >= 2:
        ratio = replicas[-1]["messages_per_s"] / max(replicas[0]["messages_per_s"], 1e-9)
        lines.append(f"Throughput, {replicas[-1]['target']} against {replicas[0]['target']}: {ratio:.2f}x.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--single-only", action="store_true", help="only the make-run deployment")
    parser.add_argument("--conversations", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--deadline-s", type=float)
    args = parser.parse_args(argv)
    plan = Plan(conversations=20, messages=100, concurrency=8, deadline_s=300) if args.quick else Plan()
    overrides = {
        key: value
        for key, value in (
            ("conversations", args.conversations),
            ("messages", args.messages),
            ("concurrency", args.concurrency),
            ("deadline_s", args.deadline_s),
        )
        if value is not None
    }
    plan = Plan(**{**asdict(plan), **overrides})
    results = []
    with tempfile.TemporaryDirectory(prefix="loadtest-") as scratch:
        work = Path(scratch)
        (work / "single").mkdir()
        with single(work / "single") as target:
            results.append(run_against(target, plan))
        print(json.dumps(results[-1], indent=1), flush=True)
        if not args.single_only:
            for replicas in sorted({1, args.replicas}):
                (work / f"cluster{replicas}").mkdir()
                with replicated(work / f"cluster{replicas}", replicas) as target:
                    results.append(run_against(target, plan))
                print(json.dumps(results[-1], indent=1), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    text = report(results, plan)
    (OUT / "report.md").write_text(text, encoding="utf-8")
    (OUT / "report.json").write_text(json.dumps({"plan": asdict(plan), "results": results}, indent=1) + "\n")
    print("\n" + text)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
