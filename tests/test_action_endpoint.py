"""Rasa's calls to the action server on a kept connection (bot/channels/rasa_patches.py): one session per
event loop whose connections are reused, a request cut off on a stale kept connection sent once more on
a fresh one, and nothing else sent twice. The action server here is a small HTTP server that can close
a kept connection the moment the next request arrives on it, as a restarted or timed-out server does.
And what Rasa sends it: the conversation's state with this turn's events only, which our actions answer
exactly as they answer the whole conversation."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from bot.channels import rasa_patches


@dataclass
class ActionServer:
    """Answers POSTs with {"events": [], "n": <request number>}. `drop_kept`: a request that arrives on a
    connection that already answered one is cut off (the connection closed, no reply). `status`: the
    HTTP status of every reply."""

    drop_kept: bool = False
    status: int = 200
    connections: int = 0
    requests: list[str] = field(default_factory=list)  # "answered" or "dropped", in order

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if self.drop_kept and answered:
                    self.requests.append("dropped")
                    return
                self.requests.append("answered")
                answered += 1
                body = json.dumps({"events": [], "n": len(self.requests)}).encode()
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@asynccontextmanager
async def running(server: ActionServer) -> AsyncIterator[EndpointConfig]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    endpoint = EndpointConfig(url=f"http://127.0.0.1:{port}/webhook")
    try:
        yield endpoint
    finally:
        await rasa_patches.close_kept_sessions(endpoint)
        listening.close()
        await listening.wait_closed()


def call(endpoint: EndpointConfig) -> Any:
    return endpoint.request(json={"next_action": "action_triage"}, method="post", timeout=10)


def test_the_patch_is_what_rasa_calls() -> None:
    assert EndpointConfig.request is rasa_patches._request


def test_calls_share_one_connection() -> None:
    server = ActionServer()

    async def three_calls() -> list[Any]:
        async with running(server) as endpoint:
            return [await call(endpoint) for _ in range(3)]

    assert [answer["n"] for answer in asyncio.run(three_calls())] == [1, 2, 3]
    assert server.connections == 1


def test_a_request_cut_off_on_a_stale_kept_connection_is_sent_again_on_a_fresh_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ActionServer(drop_kept=True)

    async def two_calls() -> list[Any]:
        async with running(server) as endpoint:
            return [await call(endpoint), await call(endpoint)]

    with caplog.at_level(logging.INFO, logger=rasa_patches.__name__):
        first, second = asyncio.run(two_calls())
    assert (first["n"], second["n"]) == (1, 3)
    assert server.requests == ["answered", "dropped", "answered"]
    assert server.connections == 2
    assert "sending the request again on a new one" in caplog.text


def test_an_error_reply_is_not_sent_again() -> None:
    server = ActionServer(status=500)

    async def one_call() -> None:
        async with running(server) as endpoint:
            await call(endpoint)

    with pytest.raises(ClientResponseError) as refused:
        asyncio.run(one_call())
    assert refused.value.status == 500
    assert server.requests == ["answered"]


def test_a_refused_connection_is_not_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    async def nobody_listening() -> None:
        listening = await asyncio.start_server(ActionServer().serve, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        listening.close()
        await listening.wait_closed()
        endpoint = EndpointConfig(url=f"http://127.0.0.1:{port}/webhook")
        try:
            await call(endpoint)
        finally:
            await rasa_patches.close_kept_sessions(endpoint)

    with caplog.at_level(logging.INFO, logger=rasa_patches.__name__), pytest.raises(aiohttp.ClientConnectorError):
        asyncio.run(nobody_listening())
    assert "sending the request again" not in caplog.text


def test_each_event_loop_has_a_session_of_its_own() -> None:
    """A session belongs to the loop it was made on (a process serves on one; tests run several)."""
    server = ActionServer()
    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        # Each loop serves the action server on a port of its own while it runs.
        listening = [loop.run_until_complete(asyncio.start_server(server.serve, "127.0.0.1", 0)) for loop in loops]
        urls = [f"http://127.0.0.1:{each.sockets[0].getsockname()[1]}/webhook" for each in listening]
        endpoint = EndpointConfig(url=urls[0])
        sessions = []
        for number in (0, 1, 0):
            endpoint.url = urls[number]
            loops[number].run_until_complete(call(endpoint))
            sessions.append(getattr(endpoint, rasa_patches._KEPT)[1])
        assert sessions[0] is not sessions[1], "the second loop made a session of its own"
        assert sessions[2] is not sessions[0], "each call is on its own loop's session"
        assert server.requests == ["answered"] * 3
        for number, session in ((0, sessions[0]), (1, sessions[1]), (0, sessions[2])):
            loops[number].run_until_complete(session.close())
        for loop, each in zip(loops, listening, strict=True):
            each.close()
            loop.run_until_complete(each.wait_closed())
    finally:
        for loop in loops:
            loop.close()


# -- what Rasa sends the action server: this turn's events --------------------------------------------


def conversation(triager: Any) -> list[Any]:
    """Three turns as Rasa keeps them: a fever reported, a question, then the latest message with the
    actions Rasa has run for it so far."""
    from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered

    def said(text: str, intent: str, number: int) -> Any:
        parse = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": [],
                 "triage": triager.triage(text).to_dict(), "message_id": f"m{number}"}  # fmt: skip
        return UserUttered(text, parse["intent"], [], parse, timestamp=1_790_000_000.0 + number,
                           input_channel="rest", message_id=f"m{number}")  # fmt: skip

    history = [{"term": "fever", "level": "call_now", "span": "fever"}]
    return [
        ActionExecuted("action_listen"),
        said("my son has a fever", "report_symptom", 1),
        ActionExecuted("action_triage"),
        BotUttered("Call your doctor or care team right away."),
        SlotSet("symptom_history", history),
        SlotSet("highest_level", "call_now"),
        ActionExecuted("action_listen"),
        said("what should I do?", "ask_what_to_do", 2),
        ActionExecuted("action_follow_up"),
        BotUttered("Call now."),
        ActionExecuted("action_listen"),
        said("thanks, and now he has a dry mouth", "report_symptom", 3),
    ]


@pytest.mark.parametrize("action_name", ["action_triage", "action_follow_up", "action_reminder",
                                         "action_conversation_state"])  # fmt: skip
def test_the_actions_answer_this_turn_s_state_as_they_answer_the_whole_conversation(
    action_name: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from bot.actions import ActionConversationState, ActionFollowUp, ActionReminder, ActionTriage
    from bot.actions import triage as triage_action
    from bot.careteam.recorder import Recorder
    from bot.careteam.store import EscalationStore
    from bot.triage import default_triager
    from tests.conftest import ROOT

    store = EscalationStore(f"sqlite:///{tmp_path / 'escalations.db'}")
    recorder = Recorder(lambda: store, spool=tmp_path / "spool")
    monkeypatch.setattr(triage_action, "default_recorder", lambda: recorder)
    domain = Domain.load(str(ROOT / "domain.yml"))
    tracker = DialogueStateTracker.from_events("patient", conversation(default_triager()), domain.slots)
    remote = RemoteAction(action_name, EndpointConfig(url="http://127.0.0.1:1/webhook"))
    sent = json.loads(json.dumps(remote._action_call_format(tracker, domain)))
    whole = json.loads(json.dumps(rasa_patches._original_call_format(remote, tracker, domain)))

    assert [event["event"] for event in sent["tracker"]["events"]] == ["user"]
    assert {k: v for k, v in sent["tracker"].items() if k != "events"} == {
        k: v for k, v in whole["tracker"].items() if k != "events"
    }
    assert {k: v for k, v in sent.items() if k != "tracker"} == {k: v for k, v in whole.items() if k != "tracker"}
    assert len(whole["tracker"]["events"]) == len(conversation(default_triager()))

    action = {a.name(): a for a in (ActionTriage(), ActionFollowUp(), ActionReminder(), ActionConversationState())}
    replies = []
    for payload in (sent, whole):
        dispatcher = CollectingDispatcher()
        events = action[action_name].run(dispatcher, Tracker.from_dict(payload["tracker"]), payload["domain"])
        replies.append((dispatcher.messages, events))
    assert replies[0] == replies[1]
    assert replies[0] != ([], []), "the action said or set something"
