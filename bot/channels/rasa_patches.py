"""Two changes to Rasa 3.6's server, applied when the channels load.

Rasa validates every action server response with `jsonschema.validate(result, schema)`, which checks the
schema itself and builds a new validator on each call: about 20 ms per custom action here, as much as
the whole rest of a turn. The same schema compiled once validates the same responses in about 0.5 ms.
Validation is kept, and its errors are Rasa's own.

Rasa runs the NLU pipeline on the event loop: a 5,000-character message took about 0.6 s of it here,
and every other patient's turn (and the channels' 10 s reply budget) waited that long. The NLU now
runs on a few worker threads: the event loop stays free, and a short message's parse shares the CPU
with a long one's instead of queueing behind it (another patient's turn: 0.7-1.6 s during a
5,000-character message before, 0.06-0.08 s after). The components are read-only at inference: 300
messages parsed on 4 threads at a 0.5 ms switch interval gave exactly the sequential intents,
confidences and entities. (The dialogue policies here, MemoizationPolicy and RulePolicy, use none of
them.)
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import jsonschema
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import UserMessage
from rasa.core.processor import MessageProcessor
from rasa.shared.core.trackers import DialogueStateTracker

_original = RemoteAction._validate_action_result
#: NLU parses at once; more than one, so that a long message does not hold up the short ones.
NLU_THREADS = 4
_nlu = ThreadPoolExecutor(max_workers=NLU_THREADS, thread_name_prefix="nlu")


@lru_cache(maxsize=1)
def _validator() -> Any:
    schema = RemoteAction.action_response_format_spec()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    try:
        _validator().validate(result)
    except jsonschema.ValidationError:
        return bool(_original(self, result))  # Rasa's own error message and handling
    return True


async def _parse_message(
    self: MessageProcessor,
    message: UserMessage,
    tracker: DialogueStateTracker | None = None,
    only_output_properties: bool = True,
) -> dict[str, Any]:
    """Rasa 3.6.21's `MessageProcessor.parse_message`, with the NLU graph run on the worker thread
    (and without its debug log of the parse, which holds the patient's words)."""
    if self.http_interpreter:
        parse_data: dict[str, Any] = await self.http_interpreter.parse(message)
    else:
        if tracker is None:
            tracker = DialogueStateTracker.from_events(message.sender_id, [])
        parse_data = await asyncio.get_running_loop().run_in_executor(
            _nlu, self._parse_message_with_graph, message, tracker, only_output_properties
        )
    self._update_full_retrieval_intent(parse_data)
    self._check_for_unseen_features(parse_data)
    return parse_data


def apply() -> None:
    RemoteAction._validate_action_result = _validate_action_result
    MessageProcessor.parse_message = _parse_message  # type: ignore[method-assign]
