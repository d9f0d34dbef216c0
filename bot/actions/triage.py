"""`action_triage`: answers a symptom report from the triage core.

The reply puts the most urgent instruction first (the level's headline from the domain), then one line
per symptom, most urgent first, with what to do and why; then the temperature advice, a request for a
temperature when fever was described without a number, and a reminder of urgent symptoms reported
earlier in the conversation. The triage object follows as a custom message for clients and reviewers.
An emergency, call-now or unclear outcome is recorded as an escalation for the care team before the
reply is returned (bot.careteam.recorder).

The message was already triaged by the NLU (`SymptomExtractor` puts the triage object on the parse data,
which Rasa sends here as the tracker's latest message): the action answers from that object rather than
reading the words a second time. When the object is missing, is not what the core writes, or places its
symptoms on words this message does not have there, the action triages the words itself (and logs why): a
malformed object costs time, never the patient's answer.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import wording
from bot.careteam.recorder import default_recorder
from bot.careteam.store import channel_name
from bot.settings import contacts
from bot.triage import Level, Symptom, Temperature, Triage, default_triager
from bot.triage.context import ASKED
from bot.triage.result import MalformedTriage
from bot.triage.rules import UNREADABLE

log = logging.getLogger(__name__)
#: Where `SymptomExtractor` (bot/nlu, which imports Rasa and so is not imported here) puts the triage
#: object on the parse data.
PARSED_TRIAGE = "triage"

HISTORY = "symptom_history"
HIGHEST = "highest_level"
NEEDS_REVIEW = "needs_review"
EMERGENCY_OPEN = "emergency_open"
LAST_SYMPTOMS = "last_symptoms"
ASKED_SYMPTOMS = "asked_symptoms"
AWAITING_TEMPERATURE = "awaiting_temperature"
REMINDED = "reminded"
LANGUAGE = "language"
#: Earlier symptoms are recalled when one of them needed at least this level and more than this reply
#: asks for (a mention after a fever still reminds of the fever).
REMIND_FROM = Level.CALL_NOW
#: Set-aside symptoms the patient says they do not have (any more): the only ones that leave the history.
DENIED = {"negated", "resolved"}


class ActionTriage(Action):
    def name(self) -> str:
        return "action_triage"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        triage = message_triage(tracker, text)
        if tracker.get_slot(AWAITING_TEMPERATURE) and triage.temperature is None:
            # The assistant asked for a reading: a bare number ("38", "101") is that reading. The core
            # reads it when told it is a temperature; it keeps no dialogue state of its own.
            reread = default_triager().triage(f"temperature {text}", language=triage.language)
            if reread.temperature is not None:
                triage = reread
        return answer(dispatcher, tracker, domain, text, triage)


def message_triage(tracker: Tracker, text: str) -> Triage:
    """The triage the NLU made of the latest message, or the text triaged here when the parse data has
    none that is well formed and of these words."""
    data = (tracker.latest_message or {}).get(PARSED_TRIAGE)
    if data is None:  # e.g. a tracker from before the NLU carried it
        return default_triager().triage(text)
    try:
        triage = Triage.from_dict(data)
    except MalformedTriage as error:
        log.warning("The NLU's triage of the message is malformed (%s): the action triages the text itself.", error)
        return default_triager().triage(text)
    if not _describes(triage, text):
        log.warning("The NLU's triage is not of this message's text: the action triages the text itself.")
        return default_triager().triage(text)
    return triage


def _describes(triage: Triage, text: str) -> bool:
    """Whether the triage was made of this text: the core's spans are the patient's words at their offsets."""
    found: list[Symptom | Temperature] = [*triage.symptoms, *triage.excluded]
    if triage.temperature is not None:
        found.append(triage.temperature)
    return all(text[item.start : item.end] == item.span for item in found)


def answer(
    dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any], text: str, triage: Triage
) -> list[EventType]:
    """The reply to a triage: headline, one line per symptom, temperature advice, reminders; the triage
    object; the escalation recorded before the reply leaves; the conversation's slots."""
    triager = default_triager()
    language = triage.language
    variables = contact_variables(language)
    speaker = wording.Speaker(dispatcher, domain, language)
    history = _history(tracker)
    mentioned_now = {s.term for s in triage.symptoms} | {s.term for s in triage.excluded}
    if triage.temperature is not None and not triage.temperature.term:
        mentioned_now |= triager.temperature_terms  # a reading below fever answers the fever said in words
    earlier = [item for item in history if item["term"] not in mentioned_now]
    emergency_open = bool(tracker.get_slot(EMERGENCY_OPEN)) and not _emergency_resolved(history, triage)
    if emergency_open and triage.level != Level.EMERGENCY:
        speaker.say("utter_emergency_first", **variables)

    asked = [s for s in triage.excluded if set(s.context) & ASKED]
    if triage.level == Level.NONE and asked:
        # A question about a side effect gets what the medicine guide says and when to call, and
        # opens no escalation.
        speaker.say("utter_side_effect_info_intro")
        for symptom in asked:
            speaker.say("utter_side_effect_info", **_information(symptom, language), **variables)
    elif triage.level == Level.NONE and any("resolved" in s.context for s in triage.excluded):
        terms = ", ".join(wording.term(s.term, language) for s in triage.excluded if "resolved" in s.context)
        speaker.say("utter_better", terms=terms)
    elif triage.level == Level.NONE:
        denied = any(set(s.context) & DENIED for s in triage.excluded)
        denied = denied or tracker.get_intent_of_latest_message() == "deny"
        if not (triage.temperature is not None and not denied):
            dispatcher.utter_message(
                response="utter_denial_ok" if denied else "utter_no_side_effect_found", **variables
            )
    elif triage.level == Level.UNCLEAR:
        headline = "utter_level_unreadable" if triage.unclear_because == UNREADABLE else "utter_level_unclear"
        speaker.say(headline, **variables)
    else:
        speaker.say(f"utter_level_{triage.level.value}", **variables)
    if triage.temperature is not None:
        band, english = triage.temperature.band, triage.temperature.advice
        speaker.say("utter_temperature_advice", advice=wording.advice(band, english, language))
    for symptom in sorted(triage.symptoms, key=lambda s: -s.level.rank):
        speaker.say("utter_symptom_line", **_line(symptom, triage.level, language), **variables)
    ask_temperature = triage.temperature is None and any(s.term in triager.temperature_terms for s in triage.symptoms)
    if ask_temperature:
        speaker.say("utter_ask_temperature")
    reminder = _reminder(earlier, triage.level, language)
    if reminder:
        speaker.say("utter_earlier_symptoms", **reminder)
    shown = {**triage.to_dict(), "message_level": triage.level.value}
    if emergency_open and triage.level != Level.EMERGENCY:
        # The reply leads with the open emergency, so its triage object says emergency; the message's own
        # level stays beside it (and is what the escalation records).
        shown["level"] = Level.EMERGENCY.value
    dispatcher.utter_message(json_message={"triage": {**shown, "emergency_open": emergency_open}})
    # Before the reply leaves: an escalation is committed (or spooled) first.
    _record_escalation(tracker, text, triage)
    events = _slots(history, triage, tracker)
    events += [
        SlotSet(LANGUAGE, language),
        SlotSet(EMERGENCY_OPEN, emergency_open or triage.level == Level.EMERGENCY),
        SlotSet(AWAITING_TEMPERATURE, ask_temperature),
        SlotSet(REMINDED, False),
    ]
    if triage.symptoms:
        events.append(SlotSet(LAST_SYMPTOMS, [_item(s) for s in triage.symptoms]))
    if triage.level == Level.NONE and triage.excluded and not asked:
        events.append(SlotSet(LAST_SYMPTOMS, None))  # "it's better" settled them
    events.append(SlotSet(ASKED_SYMPTOMS, [_item(s) for s in asked] if asked else None))
    return events


def contact_variables(language: str = "en") -> dict[str, str]:
    numbers = contacts()
    return {
        "emergency_number": numbers.emergency_number,
        "care_team_phone_suffix": wording.care_team_suffix(numbers.care_team_phone_suffix, language),
    }


def language_of(tracker: Tracker) -> str:
    """The language of the patient's latest message, as the NLU's triage read it (else the last one)."""
    triage = (tracker.latest_message or {}).get("triage") or {}
    language = triage.get("language") if isinstance(triage, dict) else None
    if language in ("en", "es"):
        return str(language)
    slot = tracker.get_slot(LANGUAGE)
    return str(slot) if slot in ("en", "es") else "en"


def open_symptoms(tracker: Tracker) -> list[dict[str, str]]:
    """The symptoms of this conversation that still count and are not being seen to, most urgent first."""
    waiting = [item for item in _history(tracker) if not item.get("handled")]
    return sorted(waiting, key=lambda item: -Level(item["level"]).rank)


def handled(tracker: Tracker) -> list[dict[str, str]]:
    """The history with every symptom marked as being seen to ("the ambulance is here"): follow-ups and
    reminders stop repeating its instruction; the care team still sees it in the transcript."""
    return [{**item, "handled": "yes"} for item in _history(tracker)]


def _emergency_resolved(history: list[dict[str, str]], triage: Triage) -> bool:
    """Whether this message resolves or denies every emergency symptom of the conversation."""
    emergencies = {item["term"] for item in history if item["level"] == Level.EMERGENCY.value}
    cleared = {s.term for s in triage.excluded if set(s.context) & DENIED}
    return bool(emergencies) and emergencies <= cleared


def _item(symptom: Symptom) -> dict[str, str]:
    return {"term": symptom.term, "level": symptom.level.value, "span": symptom.span}


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


def _line(symptom: Symptom, headline: Level, language: str) -> dict[str, str]:
    """The symptom's line. What to do is said again only where the headline does not already say it:
    a less urgent symptom beside a more urgent one, or one escalated because it is severe."""
    catalogue = default_triager().catalogue
    explanation = wording.explanation(symptom.term, catalogue.entry(symptom.term).explanation, language)
    what = ""
    if symptom.level != headline:
        what = wording.action(symptom.level, catalogue.actions[symptom.level], language) + " "
    if "severe" in symptom.context:
        what = wording.phrase("you_said_severe", "You said it is severe.", language) + " " + what
    return {"term": _capital(wording.term(symptom.term, language)), "what_to_do": what, "explanation": explanation}


def _information(symptom: Symptom, language: str) -> dict[str, str]:
    """What the medicine guide says about a symptom asked about, and when to call if it happens."""
    catalogue = default_triager().catalogue
    entry = catalogue.entry(symptom.term)
    action = wording.action(entry.level, catalogue.actions[entry.level], language)
    return {
        "term": _capital(wording.term(entry.term, language)),
        "explanation": wording.explanation(entry.term, entry.explanation, language),
        "when_to_call": wording.phrase("if_it_happens", "If it happens: {action}", language, action=_lower(action)),
    }


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def _history(tracker: Tracker) -> list[dict[str, str]]:
    value = tracker.get_slot(HISTORY)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict) and {"term", "level"} <= set(item)]


def _reminder(earlier: list[dict[str, str]], now: Level, language: str) -> dict[str, str] | None:
    urgent = [item for item in earlier if Level(item["level"]).rank >= REMIND_FROM.rank]
    if not urgent:
        return None
    worst = max(urgent, key=lambda item: Level(item["level"]).rank)
    if Level(worst["level"]).rank <= now.rank:  # this reply's headline already asks for as much
        return None
    level = Level(worst["level"])
    action = wording.action(level, default_triager().catalogue.actions[level], language)
    return {
        "earlier": ", ".join(wording.term(item["term"], language) for item in urgent),
        "earlier_advice": wording.phrase(
            "if_not_acted", "If you have not acted on that yet: {action}", language, action=_lower(action)
        ),
    }


def _slots(history: list[dict[str, str]], triage: Triage, tracker: Tracker) -> list[EventType]:
    """The history gains this message's symptoms and loses those now denied or resolved ("the fever
    is gone"); the transcript keeps everything for the care team."""
    set_aside = {s.term for s in triage.excluded if set(s.context) & DENIED}
    if triage.temperature is not None and not triage.temperature.term:
        set_aside |= default_triager().temperature_terms  # a reading below fever outweighs words said earlier
    by_term = {item["term"]: item for item in history if item["term"] not in set_aside}
    for symptom in triage.symptoms:
        previous = by_term.get(symptom.term)
        if previous is None or previous.get("handled") or Level(previous["level"]).rank < symptom.level.rank:
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
