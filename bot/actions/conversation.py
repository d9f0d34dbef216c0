"""The conversation after an answer: follow-up questions, worse, better, being seen to, yes and no.

`action_follow_up` answers from the conversation's slots, never from the message alone:
- "what do I do now?", "should I wait?", "is that serious?": the current instruction for the most urgent
  open symptom (or, with none, an invitation to describe how they feel);
- "it's getting worse", "it's constant now", "it's better now": the core reads the symptoms just reported
  together with the new words, so that its own severity and resolution rules decide (a mention symptom
  that is worse or constant is call-now; a better one leaves the history); the core keeps no state;
- "the ambulance is here": the emergency reminder ends;
- "yes" after the assistant asked whether they have a symptom they asked about: that symptom, now.

`action_reminder` runs before every reply that is not a triage (greeting, thanks, goodbye, FAQ): while an
emergency is open its instruction is the first line; after an urgent answer, a thanks or goodbye repeats
the instruction once. `action_conversation_state` ends such a reply with the triage object of the
conversation (its most urgent open level), as every reply ends with one.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from bot import wording
from bot.actions.triage import (
    ASKED_SYMPTOMS,
    EMERGENCY_OPEN,
    HISTORY,
    LANGUAGE,
    LAST_SYMPTOMS,
    REMIND_FROM,
    REMINDED,
    answer,
    contact_variables,
    handled,
    language_of,
    open_symptoms,
)
from bot.triage import Level, default_triager

FOLLOW_UPS = {
    Level.EMERGENCY: "utter_follow_up_emergency",
    Level.CALL_NOW: "utter_follow_up_call_now",
    Level.MENTION: "utter_follow_up_mention",
}


class ActionFollowUp(Action):
    def name(self) -> str:
        return "action_follow_up"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        language = language_of(tracker)
        speaker = wording.Speaker(dispatcher, domain, language)
        return [SlotSet(LANGUAGE, language), *self._reply(dispatcher, speaker, tracker, domain, language)]

    def _reply(
        self,
        dispatcher: CollectingDispatcher,
        speaker: wording.Speaker,
        tracker: Tracker,
        domain: dict[str, Any],
        language: str,
    ) -> list[EventType]:
        intent = tracker.get_intent_of_latest_message()
        text = tracker.latest_message.get("text") or ""
        if intent in ("report_worse", "report_better"):
            last = _items(tracker.get_slot(LAST_SYMPTOMS))
            if last:
                # The symptoms just reported, read again with what the patient says of them now.
                words = " and ".join(item["span"] for item in last)
                # Read in the language the NLU identified the message in: the words put together are
                # not identified again (which would load the language models into this server too).
                again = default_triager().triage(f"{words} {text}", language=language)
                return answer(dispatcher, tracker, domain, text, again)
        if intent == "affirm":
            asked = _items(tracker.get_slot(ASKED_SYMPTOMS))
            if asked:
                terms = " and ".join(item["term"] for item in asked)
                # In the conversation's language, so that the reply is too (the terms are the catalogue's
                # English, which the Spanish reader reads as well).
                said = default_triager().triage(f"I have {terms}", language=language)
                return answer(dispatcher, tracker, domain, text, said)
            if tracker.get_slot(EMERGENCY_OPEN):
                speaker.say("utter_emergency_first", **contact_variables(language))
            speaker.say("utter_affirm")
            _send_state(dispatcher, tracker, emergency_open=bool(tracker.get_slot(EMERGENCY_OPEN)))
            return []
        if intent == "report_handled":
            speaker.say("utter_handled")
            _send_state(dispatcher, tracker, emergency_open=False, seen_to=True)
            return [SlotSet(EMERGENCY_OPEN, False), SlotSet(HISTORY, handled(tracker)), SlotSet(REMINDED, True)]
        return self._instruction(dispatcher, speaker, tracker, language)

    def _instruction(
        self, dispatcher: CollectingDispatcher, speaker: wording.Speaker, tracker: Tracker, language: str
    ) -> list[EventType]:
        """The current instruction for the most urgent open symptom, in plain words."""
        variables = contact_variables(language)
        symptoms = open_symptoms(tracker)
        emergency = bool(tracker.get_slot(EMERGENCY_OPEN))
        level = Level.EMERGENCY if emergency else (Level(symptoms[0]["level"]) if symptoms else Level.NONE)
        if level not in FOLLOW_UPS:
            speaker.say("utter_follow_up_nothing_open", **variables)
        else:
            names = [wording.term(item["term"], language) for item in symptoms if Level(item["level"]) == level]
            terms = ", ".join(names) or ", ".join(wording.term(item["term"], language) for item in symptoms)
            speaker.say(FOLLOW_UPS[level], terms=terms or "your symptoms", **variables)
        _send_state(dispatcher, tracker, emergency_open=emergency)
        return []


class ActionReminder(Action):
    def name(self) -> str:
        return "action_reminder"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        # The reply's language is set here, before the response that follows this action is chosen.
        language = language_of(tracker)
        events: list[EventType] = [SlotSet(LANGUAGE, language)]
        variables = contact_variables(language)
        speaker = wording.Speaker(dispatcher, domain, language)
        if tracker.get_slot(EMERGENCY_OPEN):
            speaker.say("utter_emergency_first", **variables)
            return events
        if tracker.get_intent_of_latest_message() not in ("thank", "goodbye") or tracker.get_slot(REMINDED):
            return events
        urgent = [item for item in open_symptoms(tracker) if Level(item["level"]).rank >= REMIND_FROM.rank]
        if not urgent:
            return events
        level = Level(urgent[0]["level"])
        action = wording.action(level, default_triager().catalogue.actions[level], language)
        terms = ", ".join(wording.term(item["term"], language) for item in urgent if Level(item["level"]) == level)
        speaker.say("utter_reminder", instruction=action, terms=terms, **variables)
        return [*events, SlotSet(REMINDED, True)]


class ActionConversationState(Action):
    """Ends a reply that triaged nothing new with the conversation's triage object (after the text)."""

    def name(self) -> str:
        return "action_conversation_state"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        _send_state(dispatcher, tracker, emergency_open=bool(tracker.get_slot(EMERGENCY_OPEN)))
        return []


def _send_state(
    dispatcher: CollectingDispatcher, tracker: Tracker, emergency_open: bool, seen_to: bool = False
) -> None:
    """The triage object of a reply that triaged nothing new: the conversation's most urgent open level,
    so that web clients and the care team see what still stands (`seen_to`: nothing, it is being handled)."""
    symptoms = [] if seen_to else open_symptoms(tracker)
    level = Level.EMERGENCY if emergency_open else (Level(symptoms[0]["level"]) if symptoms else Level.NONE)
    reason = (
        "Follow-up: no new symptom in this message. "
        + ("Being seen to. " if seen_to else "")
        + (f"Open from earlier: {', '.join(item['term'] for item in symptoms)}." if symptoms else "Nothing open.")
    )
    dispatcher.utter_message(
        json_message={
            "triage": {
                "level": level.value,
                "message_level": Level.NONE.value,  # this message reported nothing new
                "reason": reason,
                "symptoms": [],
                "excluded": [],
                "temperature": None,
                "unclear_because": None,
                "emergency_open": emergency_open,
                "open_symptoms": symptoms,
            }
        }
    )


def _items(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict) and {"term", "level", "span"} <= set(item)]
