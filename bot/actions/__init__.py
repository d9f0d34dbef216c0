"""rasa_sdk actions: thin adapters that read the tracker, call the triage core and dispatch replies."""

import bot

bot.block_tensorflow()  # the action server never needs it

from bot.actions.conversation import ActionConversationState, ActionFollowUp, ActionReminder  # noqa: E402
from bot.actions.triage import ActionTriage  # noqa: E402

__all__ = ["ActionConversationState", "ActionFollowUp", "ActionReminder", "ActionTriage"]
