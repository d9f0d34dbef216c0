"""`action_triage`: answers a symptom report from the triage core.

The reply puts the most urgent instruction first (the level's headline from the domain), then one line
per symptom, most urgent first, with what to do and why; then the temperature advice, a request for a
temperature when fever was described without a number, and a reminder of urgent symptoms reported
earlier in the conversation. The triage object follows as a custom message for clients and reviewers.
An emergency, call-now or unclear outcome is recorded as an escalation for the care team before the
reply is returned (bot.careteam.recorder).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot.careteam.recorder import default_recorder
from bot.careteam.store import channel_name
from bot.settings import contacts
from bot.triage import Level, Symptom, Triage, default_triager
from bot.triage.rules import UNREADABLE

HISTORY = "symptom_history"
HIGHEST = "highest_level"
NEEDS_REVIEW = "needs_review"
#: Earlier symptoms are recalled when one of them needed at least this level and more than this reply
#: asks for (a mention after a fever still reminds of the fever).
REMIND_FROM = Level.CALL_NOW
#: Set-aside symptoms the patient asked about (a question, a "what if"): answered from the medicine guide.
ASKED = {"asked about", "hypothetical"}
#: Set-aside symptoms the patient says they do not have (any more): the only ones that leave the history.
DENIED = {"negated", "resolved"}


class ActionTriage(Action):
    def name(self) -> str:
        return "action_triage"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        triager = default_triager()
        triage = triager.triage(text)
        numbers = contacts()
        variables = {
            "emergency_number": numbers.emergency_number,
            "care_team_phone_suffix": numbers.care_team_phone_suffix,
        }
        history = _history(tracker)
        mentioned_now = {s.term for s in triage.symptoms} | {s.term for s in triage.excluded}
        earlier = [item for item in history if item["term"] not in mentioned_now]

        asked = [s for s in triage.excluded if set(s.context) & ASKED]
        if triage.level == Level.NONE and asked:
            # A question about a side effect gets what the medicine guide says and when to call, and
            # opens no escalation.
            dispatcher.utter_message(response="utter_side_effect_info_intro")
            for symptom in asked:
                dispatcher.utter_message(response="utter_side_effect_info", **_information(symptom), **variables)
        elif triage.level == Level.NONE:
            denied = any(set(s.context) & DENIED for s in triage.excluded)
            denied = denied or tracker.get_intent_of_latest_message() == "deny"
            dispatcher.utter_message(
                response="utter_denial_ok" if denied else "utter_no_side_effect_found", **variables
            )
        elif triage.level == Level.UNCLEAR:
            headline = "utter_level_unreadable" if triage.unclear_because == UNREADABLE else "utter_level_unclear"
            dispatcher.utter_message(response=headline, **variables)
        else:
            dispatcher.utter_message(response=f"utter_level_{triage.level.value}", **variables)
        if triage.temperature is not None:
            dispatcher.utter_message(response="utter_temperature_advice", advice=triage.temperature.advice)
        for symptom in sorted(triage.symptoms, key=lambda s: -s.level.rank):
            dispatcher.utter_message(response="utter_symptom_line", **_line(symptom, triage.level), **variables)
        if triage.temperature is None and any(s.term in triager.temperature_terms for s in triage.symptoms):
            dispatcher.utter_message(response="utter_ask_temperature")
        reminder = _reminder(earlier, triage.level)
        if reminder:
            dispatcher.utter_message(response="utter_earlier_symptoms", **reminder)
        dispatcher.utter_message(json_message={"triage": triage.to_dict()})
        # Before the reply leaves: an escalation is committed (or spooled) first.
        _record_escalation(tracker, text, triage)
        return _slots(history, triage, tracker)


def _record_escalation(tracker: Tracker, text: str, triage: Triage) -> None:
    message = tracker.latest_message or {}
    received_at = dt.datetime.now(dt.timezone.utc)
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            received_at = dt.datetime.fromtimestamp(float(event.get("timestamp") or 0), dt.timezone.utc)
            break
    # Without a message id (tests, the shell) the timestamp stands in: still one record per message.
    message_id = str(message.get("message_id") or f"{tracker.sender_id}@{received_at.timestamp()}")
    default_recorder().record(
        sender_id=tracker.sender_id,
        channel=channel_name(tracker.get_latest_input_channel()),
        message_id=message_id,
        text=text,
        triage=triage.to_dict(),
        received_at=received_at,
    )


def _line(symptom: Symptom, headline: Level) -> dict[str, str]:
    """The symptom's line. What to do is said again only where the headline does not already say it:
    a less urgent symptom beside a more urgent one, or one escalated because it is severe."""
    explanation = default_triager().catalogue.entry(symptom.term).explanation
    what = ""
    if symptom.level != headline:
        what = default_triager().catalogue.actions[symptom.level] + " "
    if "severe" in symptom.context:
        what = "You said it is severe. " + what
    return {"term": symptom.term[0].upper() + symptom.term[1:], "what_to_do": what, "explanation": explanation}


def _information(symptom: Symptom) -> dict[str, str]:
    """What the medicine guide says about a symptom asked about, and when to call if it happens."""
    catalogue = default_triager().catalogue
    entry = catalogue.entry(symptom.term)
    action = catalogue.actions[entry.level]
    return {
        "term": entry.term[0].upper() + entry.term[1:],
        "explanation": entry.explanation,
        "when_to_call": f"If it happens: {action[0].lower()}{action[1:]}",
    }


def _history(tracker: Tracker) -> list[dict[str, str]]:
    value = tracker.get_slot(HISTORY)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict) and {"term", "level"} <= set(item)]


def _reminder(earlier: list[dict[str, str]], now: Level) -> dict[str, str] | None:
    urgent = [item for item in earlier if Level(item["level"]).rank >= REMIND_FROM.rank]
    if not urgent:
        return None
    worst = max(urgent, key=lambda item: Level(item["level"]).rank)
    if Level(worst["level"]).rank <= now.rank:  # this reply's headline already asks for as much
        return None
    action = default_triager().catalogue.actions[Level(worst["level"])]
    return {
        "earlier": ", ".join(item["term"] for item in urgent),
        "earlier_advice": f"If you have not acted on that yet: {action[0].lower()}{action[1:]}",
    }


def _slots(history: list[dict[str, str]], triage: Triage, tracker: Tracker) -> list[EventType]:
    """The history gains this message's symptoms and loses those now denied or resolved ("the fever
    is gone"); the transcript keeps everything for the care team."""
    set_aside = {s.term for s in triage.excluded if set(s.context) & DENIED}
    by_term = {item["term"]: item for item in history if item["term"] not in set_aside}
    for symptom in triage.symptoms:
        previous = by_term.get(symptom.term)
        if previous is None or Level(previous["level"]).rank < symptom.level.rank:
            by_term[symptom.term] = {"term": symptom.term, "level": symptom.level.value, "span": symptom.span}
    levels = [Level(item["level"]) for item in by_term.values()] + [triage.level]
    previous_highest = tracker.get_slot(HIGHEST)
    if previous_highest in {level.value for level in Level}:
        levels.append(Level(previous_highest))
    highest = max(levels, key=lambda level: level.rank)
    events: list[EventType] = [SlotSet(HISTORY, list(by_term.values())), SlotSet(HIGHEST, highest.value)]
    if triage.level == Level.UNCLEAR:
        events.append(SlotSet(NEEDS_REVIEW, True))
    return events
