"""The scale-out deployment (tools/cluster.py) as a hospital would run it, in small: two Rasa replicas
behind nginx on one PostgreSQL database and a Redis lock store. One patient's messages sent at the same
time land on both replicas; each is stored once, and the turns follow one another (the lock store made
the replicas take turns), as DESIGN.md asks of a deployment that cannot route a sender to one replica.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from twilio.request_validator import RequestValidator

from tests.conftest import SMS_AUTH_TOKEN
from tools import cluster as cluster_tool
from tools.cluster import Cluster, Layout, cluster, required_binaries, write_nginx_config

pytestmark = pytest.mark.integration

ESCALATING = {"emergency", "call_now", "unclear"}
#: One patient's messages, sent all at once: the lock store must make the replicas answer them in turn.
BURST = (
    "my daughter had a seizure",
    "temp 39.2",
    "her mouth is a bit dry",
    "she has a headache",
    "hello",
    "she is very tired",
)
#: Other patients, each sending a short conversation while the burst is going on.
CONVERSATIONS = {
    "cluster-parent-1": ("my son has a fever", "and he threw up"),
    "cluster-parent-2": ("I have a rash", "no fever"),
    "cluster-parent-3": ("hi", "my back hurts"),
}
BURST_SENDER = "cluster-burst"
#: The conversation id the cluster issued for each sender above (bot/channels/sessions.py).
ISSUED: dict[str, str] = {}


@dataclass(frozen=True)
class Reply:
    sender: str
    text: str
    status: int
    upstream: str
    messages: list[dict[str, Any]]

    @property
    def level(self) -> str:
        return str(next(m["custom"]["triage"]["level"] for m in self.messages if "triage" in (m.get("custom") or {})))

    @property
    def message_level(self) -> str:
        """The level of this message itself (the reply's level may be an emergency still open from before)."""
        triage = next(m["custom"]["triage"] for m in self.messages if "triage" in (m.get("custom") or {}))
        return str(triage.get("message_level", triage["level"]))


@pytest.fixture(scope="module")
def running(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    overrides = {"TWILIO_AUTH_TOKEN": SMS_AUTH_TOKEN, "TRIAGE_EMERGENCY_NUMBER": "911"}
    with cluster(replicas=2, workdir=tmp_path_factory.mktemp("cluster"), env_overrides=overrides) as started:
        yield started


def post_json(running: Cluster, sender: str, text: str) -> Reply:
    body = json.dumps({"sender": ISSUED[sender], "message": text}).encode()
    request = urllib.request.Request(running.rest_url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return Reply(sender, text, answer.status, answer.headers["X-Upstream"], json.loads(answer.read()))


@pytest.fixture(scope="module")
def replies(running: Cluster) -> list[Reply]:
    """The burst and the other conversations, all sent at once through nginx."""
    for sender in (BURST_SENDER, *CONVERSATIONS):  # any replica issues ids every replica accepts
        request = urllib.request.Request(f"{running.url}/webhooks/rest/session", b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            ISSUED[sender] = json.loads(answer.read())["sender"]
    collected: list[Reply] = []
    failures: list[BaseException] = []
    start = threading.Barrier(len(BURST) + len(CONVERSATIONS))

    def send(sender: str, texts: tuple[str, ...]) -> None:
        try:
            start.wait(timeout=30)
            for text in texts:
                collected.append(post_json(running, sender, text))
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=send, args=(BURST_SENDER, (text,))) for text in BURST]
    threads += [threading.Thread(target=send, args=item) for item in CONVERSATIONS.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert not failures, failures
    assert len(collected) == len(BURST) + sum(map(len, CONVERSATIONS.values()))
    return collected


def stored_events(running: Cluster, sender: str) -> list[tuple[str, dict[str, Any]]]:
    engine = sa.create_engine(running.db_url, future=True)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("select type_name, data from events where sender_id = :sender order by id"),
                {"sender": ISSUED[sender]},
            ).all()
    finally:
        engine.dispose()
    return [(str(kind), json.loads(data)) for kind, data in rows]


def turns(events: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """The events from each user message up to the next one."""
    found: list[list[tuple[str, dict[str, Any]]]] = []
    for kind, data in events:
        if kind == "user":
            found.append([])
        if found:
            found[-1].append((kind, data))
    return found


def describe(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "\n".join(f"{kind:8} {data.get('text') or data.get('name') or ''}" for kind, data in events)


def test_every_reply_is_an_answer_from_the_dialogue(replies: list[Reply]) -> None:
    assert all(reply.status == 200 for reply in replies)
    assert all(any("text" in m for m in reply.messages) and reply.level for reply in replies)


def test_one_patients_simultaneous_messages_reach_both_replicas(running: Cluster, replies: list[Reply]) -> None:
    burst = {reply.upstream for reply in replies if reply.sender == BURST_SENDER}
    assert burst == {url.removeprefix("http://") for url in running.replica_urls}


def test_each_message_is_stored_once_and_each_turn_ends_before_the_next_begins(
    running: Cluster, replies: list[Reply]
) -> None:
    for sender in (BURST_SENDER, *CONVERSATIONS):
        events = stored_events(running, sender)
        sent = [reply.text for reply in replies if reply.sender == sender]
        assert Counter(data["text"] for kind, data in events if kind == "user") == Counter(sent), describe(events)
        for turn in turns(events):
            kinds = [kind for kind, _ in turn]
            assert "bot" in kinds, f"a message without its own answer:\n{describe(events)}"
            last_kind, last = turn[-1]
            assert last_kind == "action" and last.get("name") == "action_listen", (
                f"a turn that did not finish before the next message:\n{describe(events)}"
            )


def test_the_emergency_opened_exactly_one_escalation(running: Cluster, replies: list[Reply]) -> None:
    escalating = [reply for reply in replies if reply.sender == BURST_SENDER and reply.message_level in ESCALATING]
    assert "emergency" in {reply.message_level for reply in escalating}
    engine = sa.create_engine(running.db_url, future=True)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("select id, level, message_count from escalations where sender_id = :s"),
                {"s": ISSUED[BURST_SENDER]},
            ).all()
            assert len(rows) == 1, rows
            (escalation_id, level, message_count) = rows[0]
            recorded = connection.execute(
                sa.text("select count(*) from escalation_messages where escalation_id = :id"), {"id": escalation_id}
            ).scalar_one()
    finally:
        engine.dispose()
    assert level == "emergency"
    assert message_count == recorded == len(escalating)


def test_a_signed_sms_through_nginx_gets_a_twiml_reply(running: Cluster) -> None:
    fields = {
        "MessageSid": "SM" + "c" * 32,
        "SmsMessageSid": "SM" + "c" * 32,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15550001234",
        "To": "+15550009999",
        "Body": "my boy had a seizure",
        "NumMedia": "0",
    }
    # Twilio signs the URL it posts to: the public one, nginx's, which the replicas are told.
    signature = RequestValidator(SMS_AUTH_TOKEN).compute_signature(running.sms_url, fields)
    request = urllib.request.Request(
        running.sms_url,
        urllib.parse.urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200
        twiml = answer.read().decode()
    reply = "\n".join(message.text or "" for message in ET.fromstring(twiml).findall("Message"))
    assert reply.startswith("Call emergency services now: 911.")


def test_health_and_socket_io_through_nginx(running: Cluster) -> None:
    with urllib.request.urlopen(f"{running.url}/health", timeout=10) as answer:
        assert answer.status == 200 and json.loads(answer.read()) == {"status": "ok"}
    upstreams = set()
    for _ in range(3):  # socket.io's handshake: the same client address is always sent to the same replica
        with urllib.request.urlopen(f"{running.url}/socket.io/?EIO=4&transport=polling", timeout=10) as answer:
            assert answer.status == 200 and b'"sid"' in answer.read()
            upstreams.add(answer.headers["X-Upstream"])
    assert len(upstreams) == 1


def test_nginx_passes_on_only_the_channels_and_health(running: Cluster) -> None:
    assert running.exited() == []
    with pytest.raises(urllib.error.HTTPError) as refused:  # Rasa's HTTP API stays off behind nginx too
        urllib.request.urlopen(f"{running.url}/conversations/{BURST_SENDER}/tracker", timeout=10)
    assert refused.value.code == 404


def test_the_nginx_configuration_for_three_replicas_and_two_action_servers_is_valid(tmp_path: Path) -> None:
    layout = Layout(tmp_path, nginx=8080, replicas=(5005, 5015, 5025), actions=(5055, 5065), actions_entry=5050,
                    careteam=5006, redis=6379)  # fmt: skip
    layout.logs.mkdir()
    config = write_nginx_config(layout)
    text = config.read_text()
    assert text.count("server 127.0.0.1:50") == 2 * 3 + 2  # both replica upstreams, the action upstream
    command = [required_binaries().nginx, "-t", "-p", str(config.parent), "-c", str(config)]
    checked = subprocess.run([*command, "-e", str(layout.logs / "t.log")], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_stores_refuse_clients_without_this_runs_secrets(running: Cluster) -> None:
    """PostgreSQL (SCRAM) and Redis (requirepass) ask for passwords made for this run; the replicas share
    a random session secret; what is printed shows none of them."""
    database = sa.engine.make_url(running.db_url)
    redis = urllib.parse.urlsplit(running.redis_url)
    assert database.password and redis.password and len(running.env["TRIAGE_SESSION_SECRET"]) >= 32
    without = f"postgresql://{database.username}@{database.host}:{database.port}/{database.database}"
    for url in (without, database.set(password="not-the-password")):
        engine = sa.create_engine(url, future=True)
        with pytest.raises(sa.exc.OperationalError, match="password"):
            engine.connect()
        engine.dispose()
    with socket.create_connection(("127.0.0.1", int(redis.port or 0)), timeout=5) as connection:
        connection.sendall(b"GET anything\r\n")
        assert connection.recv(200).startswith(b"-NOAUTH")
    printed = cluster_tool.describe(running)
    for secret in (database.password, redis.password, running.env["TRIAGE_SESSION_SECRET"]):
        assert secret not in printed
    # Behind nginx, no origin is let in by CORS unless configured (TRIAGE_CORS_ORIGINS).
    request = urllib.request.Request(running.rest_url, method="OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            allowed = answer.headers.get("Access-Control-Allow-Origin")
    except urllib.error.HTTPError as error:
        allowed = error.headers.get("Access-Control-Allow-Origin")
    assert allowed is None
