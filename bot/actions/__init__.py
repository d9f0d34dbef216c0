"""rasa_sdk actions: thin adapters that read the tracker, call the triage core and dispatch replies."""

import bot

bot.block_tensorflow()  # the action server never needs it

from bot.actions.conversation import ActionConversationState, ActionFollowUp, ActionReminder  # noqa: E402
from bot.actions.triage import ActionTriage  # noqa: E402

__all__ = ["ActionConversationState", "ActionFollowUp", "ActionReminder", "ActionTriage"]

# The triage core, English and Spanish, is loaded when the action server starts rather than at the first
# message, which must not wait for it.
from bot.triage import default_triager  # noqa: E402

default_triager().spanish_triager()
