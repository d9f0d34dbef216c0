"""A turn costs the same at turn 300 as at turn 1 (issue 6): the conversation store (bot/tracker_store.py)
reads a bounded window of each conversation, with the state of the whole session, and appends only new
events; on SQLite and on PostgreSQL. The dialogue answers the same as with Rasa's own store.

The store's tests play Rasa's part the way its message processor does (read the tracker, add a turn's
events, save the same tracker object) with Rasa's real events; Rasa's own SQL store reads the same
database as the reference. The last test runs the assistant with both stores side by side.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActionExecutionRejected,
    ActiveLoop,
    AllSlotsReset,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    DefinePrevUserUtteredFeaturization,
    EntitiesAdded,
    Event,
    FollowupAction,
    LoopInterrupted,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUtteranceReverted,
    UserUttered,
    deserialise_events,
)
from rasa.shared.core.trackers import DialogueStateTracker

from bot.tracker_store import TriageSQLTrackerStore, _deserialise
from tests.conftest import ROOT, Assistant, free_port
from tests.postgres import fresh_database
from tools import serve

HISTORY, HIGHEST, REVIEW = "symptom_history", "highest_level", "needs_review"


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> TriageSQLTrackerStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'triage.db'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"))
    monkeypatch.setenv("TRIAGE_DB_URL", url)
    return TriageSQLTrackerStore(domain)


class Conversation:
    """One sender's conversation, driven as Rasa's processor drives the store, remembering every event
    it added (what the database must hold, in order)."""

    def __init__(self, store: TriageSQLTrackerStore, sender: str = "patient-1") -> None:
        self.store, self.sender = store, sender
        self.added: list[Event] = []
        self.last: DialogueStateTracker | None = None

    def turn(self, *events: Event) -> DialogueStateTracker:
        tracker = asyncio.run(self.store.get_or_create_tracker(self.sender, append_action_listen=False))
        if not tracker.events:  # a new conversation starts with a session, stamped before the turn's events
            at = min(event.timestamp for event in events) - 1
            start = (ActionExecuted("action_session_start", timestamp=at), SessionStarted(timestamp=at),
                     ActionExecuted("action_listen", timestamp=at))  # fmt: skip
            events = (*start, *events)
        for event in events:
            tracker.update(event)
        self.added.extend(events)
        asyncio.run(self.store.save(tracker))
        self.last = tracker
        return tracker

    def message(self, number: int, *slots: Event) -> DialogueStateTracker:
        return self.turn(
            UserUttered(f"message {number}", {"name": "report_symptom", "confidence": 1.0}),
            ActionExecuted("action_triage"),
            BotUttered(f"answer {number}"),
            *slots,
            ActionExecuted("action_listen"),
        )

    def read(self) -> DialogueStateTracker:
        tracker = asyncio.run(self.store.retrieve(self.sender))
        assert tracker is not None
        return tracker

    def rasa_read(self) -> DialogueStateTracker:
        """The tracker as Rasa's own SQL store reads it: every event of the session, replayed."""
        tracker = asyncio.run(SQLTrackerStore.retrieve(self.store, self.sender))
        assert tracker is not None
        return tracker

    def stored(self) -> list[tuple[str, float]]:
        table = self.store.SQLEvent.__table__
        with self.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.type_name, table.c.timestamp)
                .where(table.c.sender_id == self.sender)
                .order_by(table.c.id)
            ).all()
        return [(str(kind), float(stamp)) for kind, stamp in rows]


def slots(tracker: DialogueStateTracker) -> dict[str, Any]:
    return {name: slot.value for name, slot in tracker.slots.items()}


def history(*terms: str) -> SlotSet:
    return SlotSet(HISTORY, [{"term": term, "level": "call_now", "span": term} for term in terms])


def test_a_turn_reads_the_same_few_events_at_turn_300_as_at_turn_5(store: TriageSQLTrackerStore) -> None:
    talk = Conversation(store)
    sizes = {}
    for number in range(1, 301):
        extra = [history(*(f"term {n}" for n in range(1, number + 1, 50)))] if number % 50 == 1 else []
        if number == 1:
            extra.append(SlotSet(REVIEW, True))
        talk.message(number, *extra, SlotSet(HIGHEST, "call_now" if number % 2 else "mention"))
        if number in (5, 100, 300):
            sizes[number] = len(talk.read().events)
    assert sizes[5] == sizes[100] == sizes[300] < 30, sizes
    window, whole = talk.read(), talk.rasa_read()
    assert len(whole.events) > 1500
    assert slots(window) == slots(whole)
    assert slots(window)[REVIEW] is True and len(slots(window)[HISTORY]) == 6  # set at turns 1 and 251
    assert [e.as_dict() for e in list(window.events)[-15:]] == [e.as_dict() for e in list(whole.events)[-15:]]
    assert window.latest_message.text == whole.latest_message.text == "message 300"


def test_the_database_does_the_same_work_for_a_turn_at_turn_400_as_at_turn_20(
    tmp_path: Path, domain: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted in SQLite's virtual-machine steps (not time, which the machine's load decides): a query that
    walked the sender's rows instead of seeking the index would grow with the conversation."""
    monkeypatch.setenv("TRIAGE_DB_URL", f"sqlite:///{tmp_path / 'steps.db'}")
    store = TriageSQLTrackerStore(domain)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    sa.event.listen(store.engine, "checkout", lambda dbapi, record, proxy: dbapi.set_progress_handler(count, 1))
    talk = Conversation(store)
    cost = {}
    for number in range(1, 401):
        if number in (20, 400):
            steps[0] = 0
        talk.message(number, history(f"term {number % 9}"), SlotSet(HIGHEST, "call_now"))
        if number in (20, 400):
            cost[number] = steps[0]
    assert cost[400] <= 1.1 * cost[20], cost


def test_every_event_is_stored_once_and_in_order(store: TriageSQLTrackerStore) -> None:
    talk = Conversation(store)
    for number in range(1, 41):
        talk.message(number, SlotSet(HIGHEST, "call_now"))
    assert talk.stored() == [(event.type_name, event.timestamp) for event in talk.added]


def test_a_save_repeated_after_its_commit_stores_nothing_twice(store: TriageSQLTrackerStore) -> None:
    """A save retried because the database's answer was lost after it committed (the retry in
    `_retrying`): the same tracker, with what it knew before that save, is saved again."""
    talk = Conversation(store)
    for number in range(1, 6):
        talk.message(number)
    tracker = talk.read()
    tracker.update(UserUttered("again", {"name": "greet", "confidence": 1.0}))
    talk.added.append(tracker.events[-1])
    before_commit = copy.deepcopy(tracker)
    asyncio.run(store.save(tracker))
    asyncio.run(store.save(before_commit))
    asyncio.run(store.save(tracker))
    assert talk.stored() == [(event.type_name, event.timestamp) for event in talk.added]


def test_slots_set_before_the_window_survive_a_revert_that_replays_the_tracker(
    store: TriageSQLTrackerStore,
) -> None:
    talk = Conversation(store)
    talk.message(1, history("fever"), SlotSet(HIGHEST, "call_now"))
    for number in range(2, 12):
        talk.message(number)
    for read in (talk.read(), talk.rasa_read()):
        read.update(UserUttered("what?", {"name": "nlu_fallback", "confidence": 0.2}))
        read.update(ActionExecuted("action_default_fallback"))
        read.update(UserUtteranceReverted())  # as Rasa's default fallback does: reset, then replay
        assert read.get_slot(HISTORY) == [{"term": "fever", "level": "call_now", "span": "fever"}]
        assert read.get_slot(HIGHEST) == "call_now"


def test_a_restart_or_a_reset_before_the_window_clears_what_it_cleared(store: TriageSQLTrackerStore) -> None:
    talk = Conversation(store)
    talk.message(1, history("fever"), SlotSet(REVIEW, True))
    talk.turn(UserUttered("/restart", {"name": "restart", "confidence": 1.0}), ActionExecuted("action_restart"),
              Restarted(), ActionExecuted("action_listen"))  # fmt: skip
    talk.message(2, SlotSet(HIGHEST, "mention"))
    talk.message(3, history("rash"))
    talk.turn(UserUttered("reset", {"name": "greet", "confidence": 1.0}), AllSlotsReset(), SlotSet(REVIEW, False),
              ActionExecuted("action_listen"))  # fmt: skip
    for number in range(4, 12):
        talk.message(number)
    window, whole = talk.read(), talk.rasa_read()
    assert slots(window) == slots(whole)
    assert (window.get_slot(HISTORY), window.get_slot(HIGHEST), window.get_slot(REVIEW)) == (None, None, False)


def test_a_pause_and_an_active_loop_from_before_the_window_still_hold(
    store: TriageSQLTrackerStore, domain: Domain
) -> None:
    forms = "version: '3.1'\nforms:\n  first_form:\n    required_slots: []\n  symptom_form:\n    required_slots: []\n"
    store.domain = domain.merge(Domain.from_yaml(forms))  # this assistant has no forms (yet)
    talk = Conversation(store)
    talk.message(1, ActiveLoop("first_form"), ActiveLoop("symptom_form"), ConversationResumed())
    talk.message(2, ConversationPaused(), SlotSet(HIGHEST, "mention"))
    for number in range(3, 10):
        talk.message(number)
    window, whole = talk.read(), talk.rasa_read()
    assert window.is_paused() and whole.is_paused()
    assert window.active_loop_name == whole.active_loop_name == "symptom_form"
    assert slots(window) == slots(whole)


def test_a_new_session_starts_the_window_and_carries_its_slots(store: TriageSQLTrackerStore) -> None:
    talk = Conversation(store)
    for number in range(1, 8):
        talk.message(number, history("fever") if number == 2 else SlotSet(HIGHEST, "call_now"))
    # A session expired: Rasa's session start, carrying the slots over (domain: carry_over_slots_to_new_session).
    started = SessionStarted()  # made before the slots it carries, as ActionSessionStart makes them
    carried = [SlotSet(name, value) for name, value in slots(talk.read()).items() if value is not None]
    talk.turn(ActionExecuted("action_session_start"), started, *carried, ActionExecuted("action_listen"))
    talk.message(8)
    window, whole = talk.read(), talk.rasa_read()
    assert slots(window) == slots(whole) and window.get_slot(HISTORY)[0]["term"] == "fever"
    assert [e.as_dict() for e in window.applied_events()] == [e.as_dict() for e in whole.applied_events()]
    assert not any(e.text == "message 7" for e in window.events if isinstance(e, UserUttered))


def test_a_tracker_this_store_did_not_read_is_saved_as_rasa_saves_it(store: TriageSQLTrackerStore) -> None:
    events = [ActionExecuted("action_listen"), UserUttered("hi", {"name": "greet", "confidence": 1.0}),
              ActionExecuted("utter_greet"), BotUttered("Hello."), ActionExecuted("action_listen")]  # fmt: skip
    tracker = DialogueStateTracker.from_events("built-elsewhere", events, store.domain.slots)
    asyncio.run(store.save(tracker))
    asyncio.run(store.save(tracker))
    talk = Conversation(store, "built-elsewhere")
    assert talk.stored() == [(event.type_name, event.timestamp) for event in events]


def test_events_are_read_back_as_rasa_reads_them() -> None:
    events = [
        ActionExecuted("action_listen", policy="RulePolicy", confidence=1.0),
        UserUttered("I have a rash", {"name": "report_symptom", "confidence": 0.9}, [{"entity": "symptom"}]),
        BotUttered("Mention it.", {"custom": {"triage": {"level": "mention"}}}),
        SlotSet(HISTORY, [{"term": "rash", "level": "mention"}]),
        SessionStarted(),
        Restarted(),
        AllSlotsReset(),
        UserUtteranceReverted(),
        ActiveLoop("a_form"),
        FollowupAction("action_triage"),
        ConversationPaused(),
        ConversationResumed(),
        ActionExecutionRejected("action_triage"),
        LoopInterrupted(True),
        DefinePrevUserUtteredFeaturization(False),
        EntitiesAdded([{"entity": "symptom", "value": "rash"}]),
    ]
    dumped = [event.as_dict() for event in events]
    ours = [event.as_dict() for event in _deserialise(dumped)]
    assert ours == [event.as_dict() for event in deserialise_events(dumped)] == dumped


# -- the assistant with both stores ------------------------------------------------------------------

#: A long conversation: a call-now symptom first, then many turns about other things; the reminder of the
#: fever must still come when it has left the window, and every answer must be the one Rasa's store gives.
LONG_CONVERSATION = (
    "hello",
    "I have a fever of 38.6",
    *(["my mouth is a bit dry", "thank you", "are you a bot?", "I have a mild headache"] * 3),
    "no fever anymore",
    "my mouth is a bit dry",
    "bye",
)


@pytest.fixture(scope="module")
def rasa_store_server(assistant: Assistant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Rasa server beside the session's assistant, on the same action server, with Rasa's own
    SQL tracker store (endpoints type `sql`) on a database of its own."""
    folder = tmp_path_factory.mktemp("rasa-store")
    endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    endpoints["tracker_store"] = {"type": "sql", "dialect": "sqlite", "db": str(folder / "rasa.db")}
    (folder / "endpoints.yml").write_text(yaml.safe_dump(endpoints), encoding="utf-8")
    ports = serve.Ports(rasa=free_port(), actions=assistant.ports.actions, careteam=free_port())
    env = {**assistant.env, "TRIAGE_RASA_PORT": str(ports.rasa)}
    process = serve.start_rasa(ports, env, folder / "rasa.log", endpoints=folder / "endpoints.yml")
    try:
        yield f"http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook"
    finally:
        serve.stop(process)


def converse(url: str, texts: tuple[str, ...]) -> list[tuple[str, str]]:
    """(text, level) of each answer; the conversation goes on under the id the server answers with."""
    sender, answers = f"long-{time.time_ns()}", []
    for text in texts:
        body = json.dumps({"sender": sender, "message": text}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
            messages = json.loads(answer.read())
        sender = messages[0]["recipient_id"]
        level = next(m["custom"]["triage"]["level"] for m in messages if "triage" in (m.get("custom") or {}))
        answers.append(("\n".join(m["text"] for m in messages if m.get("text")), level))
    return answers


@pytest.mark.integration
def test_the_assistant_answers_a_long_conversation_as_with_rasas_own_store(
    assistant: Assistant, rasa_store_server: str
) -> None:
    ours = converse(f"http://127.0.0.1:{assistant.ports.rasa}/webhooks/rest/webhook", LONG_CONVERSATION)
    theirs = converse(rasa_store_server, LONG_CONVERSATION)
    assert ours == theirs
    dry = [text for (text, _), said in zip(ours, LONG_CONVERSATION, strict=True) if said == "my mouth is a bit dry"]
    assert "fever" in dry[-2]  # "earlier you told me about": the slot, set before the window
    assert "fever" not in dry[-1]  # after "no fever anymore" the history has let it go
