"""The action server's responses, validated as Rasa validates them (bot/channels/rasa_patches.py): each
event checked against the kinds of event of its own name gives the same answer as Rasa's whole schema,
for the responses our actions send and for broken ones."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rasa.core.actions.action import RemoteAction

from bot.channels import rasa_patches
from tests.conftest import ROOT

SCHEMA = RemoteAction.action_response_format_spec()
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
MESSAGES = [
    "my son had a seizure and has a temperature of 39.4",
    "a bit of diarrhea today",
    "no fever and no chills",
    "I feel off",
    "mi hijo tiene fiebre",
    "could this medicine make me tired?",
]


#: Rasa's own test: the whole schema, every event tried against every kind (`jsonschema.validate` without
#: checking the schema itself each time).
WHOLE = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)


def rasa_says(result: Any) -> bool:
    return bool(WHOLE.is_valid(result))


@pytest.fixture(scope="module")
def responses(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What our actions answer Rasa with, for messages of every level, with and without a history."""
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    from bot.actions import ActionConversationState, ActionFollowUp, ActionReminder, ActionTriage
    from bot.actions import triage as triage_action
    from bot.careteam.recorder import Recorder
    from bot.careteam.store import EscalationStore

    folder: Path = tmp_path_factory.mktemp("schema")
    store = EscalationStore(f"sqlite:///{folder / 'escalations.db'}")
    recorder = Recorder(lambda: store, spool=folder / "spool")
    original = triage_action.default_recorder
    triage_action.default_recorder = lambda: recorder
    found = []
    try:
        history = [{"term": "fever", "level": "call_now", "span": "fever"}]
        for number, text in enumerate(MESSAGES):
            for action in (ActionTriage(), ActionFollowUp(), ActionReminder(), ActionConversationState()):
                tracker = Tracker(
                    sender_id="schema",
                    slots={"symptom_history": history, "emergency_open": number % 2 == 0},
                    latest_message={"text": text, "intent": {"name": "report_symptom"}, "message_id": f"m{number}"},
                    events=[],
                    paused=False,
                    followup_action=None,
                    active_loop={},
                    latest_action_name="action_listen",
                )
                dispatcher = CollectingDispatcher()
                events = action.run(dispatcher, tracker, DOMAIN)
                found.append({"events": events, "responses": dispatcher.messages})
    finally:
        triage_action.default_recorder = original
    return found


def test_every_response_of_our_actions_is_valid_both_ways(responses: list[dict[str, Any]]) -> None:
    assert len(responses) == 4 * len(MESSAGES)
    for response in responses:
        assert rasa_says(response)
        assert rasa_patches.response_schema().conforms(response)


BROKEN: list[tuple[str, Any]] = [
    ("not an object", []),
    ("events not a list", {"events": {"event": "slot"}}),
    ("responses not a list", {"events": [], "responses": "hello"}),
    ("a response not an object", {"events": [], "responses": ["hello"]}),
    ("an event without a name", {"events": [{"name": "language", "value": "en"}]}),
    ("an event named by a number", {"events": [{"event": 3, "name": "language", "value": "en"}]}),
    ("an unknown kind of event", {"events": [{"event": "teleport"}]}),
    ("a slot without a value", {"events": [{"event": "slot", "name": "language"}]}),
    ("a slot named by a number", {"events": [{"event": "slot", "name": 5, "value": "en"}]}),
    ("a timestamp in words", {"events": [{"event": "slot", "name": "x", "value": 1, "timestamp": "noon"}]}),
    ("entities without a list", {"events": [{"event": "entities", "entities": "fever"}]}),
    ("a user event with a ranking of words", {"events": [{"event": "user", "parse_data": {"intent_ranking": "x"}}]}),
    ("an action event with a confidence in words", {"events": [{"event": "action", "confidence": "high"}]}),
    ("a bot event", {"events": [{"event": "bot", "text": "hello"}]}),
    ("nothing", {}),
]


@pytest.mark.parametrize(("what", "result"), BROKEN, ids=[what for what, _ in BROKEN])
def test_a_response_gets_the_same_verdict_as_rasa_s_own(what: str, result: Any) -> None:
    assert rasa_patches.response_schema().conforms(result) == rasa_says(result)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
EVENT_NAMES = st.sampled_from(["slot", "user", "action", "bot", "entities", "followup", "reminder", "nope"])
KEYS = st.sampled_from(["event", "name", "value", "timestamp", "metadata", "text", "parse_data", "entities"])


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_response_gets_the_same_verdict_as_rasa_s_own(
    responses: list[dict[str, Any]], data: st.DataObject
) -> None:
    response = copy.deepcopy(data.draw(st.sampled_from(responses)))
    for _ in range(data.draw(st.integers(1, 3))):
        events = response["events"]
        if not events:
            events.append({})
        item = events[data.draw(st.integers(0, len(events) - 1))]
        change = data.draw(st.sampled_from(["set", "delete", "rename"]))
        key = data.draw(KEYS)
        if change == "set":
            item[key] = data.draw(JSON)
        elif change == "delete":
            item.pop(key, None)
        else:
            item["event"] = data.draw(EVENT_NAMES)
    verdict = rasa_says(response)
    event("valid" if verdict else "invalid")
    assert rasa_patches.response_schema().conforms(response) == verdict
