"""Faults the service must survive, with the real servers: the database locked by another writer for
longer than the reply may take. The patient gets the safe answer at once; the conversation is stored
when the database is free again (its save waits and retries); the escalation is written exactly once
(the safe reply's record and the dialogue's share the message id). And the action server restarted
between two turns: the Rasa server keeps its connections to it alive, and the next turn, sent at once,
is answered by the action server as usual (a kept connection the restart closed is not used).

The other faults are tested where their parts are: the action server killed and back
(test_integration), the Rasa server restarted with conversation and escalations intact
(test_integration), the notification receiver down then up (test_notifier, test_careteam_browser),
the database refusing the escalation mid-turn (test_actions: spooled, answered, written later)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import pytest

from bot.careteam.store import EscalationStore, Query
from tests.conftest import Assistant
from tools import serve

pytestmark = pytest.mark.integration
LOCK_S = 16.0  # longer than the 10 s reply budget and the 5 s each connection waits for a lock


def user_texts(assistant: Assistant, sender: str) -> list[str]:
    with sqlite3.connect(assistant.db) as db:
        rows = db.execute(
            "select json_extract(data, '$.text') from events where sender_id = ? and type_name = 'user'", (sender,)
        )
        return [row[0] for row in rows]


def test_a_locked_database_delays_nothing_the_patient_needs_and_loses_nothing(assistant: Assistant) -> None:
    sender = f"locked-{uuid.uuid4().hex[:8]}"
    locker = sqlite3.connect(assistant.db, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    released = threading.Event()

    def release() -> None:
        time.sleep(LOCK_S)
        locker.execute("COMMIT")
        locker.close()
        released.set()

    threading.Thread(target=release, daemon=True).start()
    started = time.monotonic()
    text, triage = assistant.say(sender, "my daughter had a seizure")
    waited = time.monotonic() - started
    assert text.startswith("Call emergency services now: 911.")
    assert triage["level"] == "emergency" and triage["safety_net"] is True
    assert waited < LOCK_S, f"answered after {waited:.1f} s, not before the lock was released"

    assert released.wait(30)
    deadline = time.monotonic() + 60
    patient = assistant.sender_id(sender)  # the conversation's id, as the server issued and stored it
    while not user_texts(assistant, patient) and time.monotonic() < deadline:
        time.sleep(1)
    assert user_texts(assistant, patient) == ["my daughter had a seizure"], "the turn was stored once it could be"

    store = EscalationStore(f"sqlite:///{assistant.db}")
    spool = assistant.db.parent / "spool" / "escalations.jsonl"
    # The next escalation (any patient's) writes whatever waited in the spool first.
    assistant.say(f"{sender}-next", "she has a fever")
    [escalation] = [e for e in store.queue(Query(search=patient, status="all")) if e.sender_id == patient]
    assert (escalation.level, escalation.message_count) == ("emergency", 1)
    assert not spool.exists() or spool.read_text() == ""
    if spool.exists():
        assert spool.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("restart", ["stopped", "killed"])
def test_the_action_server_restarted_between_turns_answers_the_next_turn(assistant: Assistant, restart: str) -> None:
    sender = f"restart-{restart}-{uuid.uuid4().hex[:8]}"
    for turn in range(3):  # several calls, so that the Rasa server holds a kept connection to the action server
        text, triage = assistant.say(sender, ["hello", "she has a fever", "what should I do?"][turn])
        assert "safety_net" not in triage
    assert assistant.actions is not None
    if restart == "stopped":
        serve.stop(assistant.actions)  # a deploy: SIGTERM, the server closes its connections
    else:
        assistant.actions.kill()  # a crash: the kernel closes them
        assistant.actions.wait()
    assistant.start_actions()
    text, triage = assistant.say(sender, "and now she has a headache too")
    assert "safety_net" not in triage, "the action server answered, not the channel's safety net"
    assert triage["level"] == "call_now" and text.startswith("Call your doctor or care team right away")
    text, triage = assistant.say(sender, "what should I do?")
    assert "safety_net" not in triage and triage["level"] == "call_now"
