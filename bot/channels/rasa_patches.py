"""Changes to Rasa 3.6's server, each measured, applied when the channels load.

Rasa validates every action server response with `jsonschema.validate(result, schema)`, which checks the
schema itself and builds a new validator on each call: about 20 ms per custom action here, as much as
the whole rest of a turn. The same schema compiled once still took about 3.5 ms for a triage reply: each
event is tried against all 23 kinds of event the schema allows (`oneOf`), and a reply sets 8 slots. Each
kind is told by its `event` name (`"const"`), and an event whose name is not a kind's cannot match that
kind; so each event is checked against the kinds of its own name only, which is the same test (exactly
one kind matches) at a tenth of the cost. Validation is kept, and its errors are Rasa's own.

Rasa runs the NLU pipeline on the event loop: a 5,000-character message took about 0.6 s of it here,
and every other patient's turn (and the channels' 10 s reply budget) waited that long. The NLU now
runs on a few worker threads: the event loop stays free, and a short message's parse shares the CPU
with a long one's instead of queueing behind it (another patient's turn: 0.7-1.6 s during a
5,000-character message before, 0.06-0.08 s after). The components are read-only at inference: 300
messages parsed on 4 threads at a 0.5 ms switch interval gave exactly the sequential intents,
confidences and entities. (The dialogue policy here, RulePolicy, uses none of them.)

The ResponseSelector chooses an FAQ answer for every message (about 2.5 ms of TensorFlow each), and its
choice is read only when the message's intent is its retrieval intent (`faq`): by the `utter_faq` response
and by Rasa's full retrieval intent name. It now runs on those messages only; a symptom report, a greeting
or a follow-up carries no FAQ choice in its parse data. (FallbackClassifier, after it in the pipeline, can
only turn an intent into `nlu_fallback`, never into `faq`.)

Rasa sends the action server the conversation's state with every event it holds (three turns here,
bot/tracker_store.py): about 70 kB a call, 60 kB of them earlier turns' events, serialised by Rasa and
parsed by the action server on every call (about 1.5 ms). Our actions read the slots, the latest message
and this turn's user event (its time and channel), never an earlier turn's events, so the state they are
sent keeps the events from this turn's user message on; everything else in it is Rasa's own.

Rasa calls the action server through `EndpointConfig.request`, which opens a new aiohttp session, and with
it a new connection, for every action and closes both after it: about 2.5 ms of a turn that runs one or
two actions. The endpoint now keeps one session, and its connections alive between calls (the session of
the event loop that serves; a call on another loop, as in tests, makes that loop one of its own).
A kept connection can be stale: the action server closed it (restarted, or its keep-alive ran out) just
as a request was sent on it. Such a request, cut off before any reply (the connection reset or closed),
is sent once more on a fresh connection, as Rasa would have sent it. Sending an action again is safe: the
action server keeps no state between calls, and an escalation is recorded once per message id however
often it is sent. A refused connection (the action server is down) and a timeout are not retried: Rasa's
error, and the channels' safe reply, follow at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
import jsonschema
import rasa
import rasa.core.run
from aiohttp.client_exceptions import ContentTypeError
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import UserMessage
from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
from rasa.core.processor import MessageProcessor
from rasa.nlu.selectors.response_selector import ResponseSelector
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker, EventVerbosity
from rasa.shared.exceptions import FileNotFoundException
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY
from rasa.shared.nlu.training_data.message import Message
from rasa.utils.endpoints import ClientResponseError, EndpointConfig, concat_url

log = logging.getLogger(__name__)

_original = RemoteAction._validate_action_result
#: NLU parses at once; more than one, so that a long message does not hold up the short ones.
NLU_THREADS = 4
_nlu = ThreadPoolExecutor(max_workers=NLU_THREADS, thread_name_prefix="nlu")


@dataclass(frozen=True)
class ResponseSchema:
    """Rasa's action response schema, compiled once: the whole response with each event checked only
    against what every event must have (`reply`), and each kind of event by its name (`kinds`)."""

    reply: Any
    kinds: Mapping[str, tuple[Any, ...]]
    #: Kinds that do not name their event by a `const`: every event is tried against them too.
    unnamed: tuple[Any, ...]

    def conforms(self, result: Any) -> bool:
        """Whether `result` is valid under Rasa's schema (the same answer as `jsonschema.validate`)."""
        if not self.reply.is_valid(result):
            return False
        for event in result.get("events", ()):  # `reply` has checked that each is an object with a string name
            candidates = (*self.kinds.get(event["event"], ()), *self.unnamed)
            if sum(1 for kind in candidates if kind.is_valid(event)) != 1:  # oneOf: exactly one kind
                return False
        return True


@lru_cache(maxsize=1)
def response_schema() -> ResponseSchema:
    schema = RemoteAction.action_response_format_spec()
    compile_ = jsonschema.validators.validator_for(schema)
    compile_.check_schema(schema)
    events = schema["properties"]["events"]
    alternatives = events["items"]["oneOf"]
    every_event = {key: value for key, value in events["items"].items() if key != "oneOf"}
    reply = {**schema, "properties": {**schema["properties"], "events": {**events, "items": every_event}}}
    kinds: dict[str, list[Any]] = {}
    unnamed = []
    for kind in alternatives:
        name = kind.get("properties", {}).get("event", {}).get("const")
        if isinstance(name, str):
            kinds.setdefault(name, []).append(compile_(kind))
        else:
            unnamed.append(compile_(kind))
    return ResponseSchema(compile_(reply), {k: tuple(v) for k, v in kinds.items()}, tuple(unnamed))


def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
    if response_schema().conforms(result):
        return True
    return bool(_original(self, result))  # Rasa's own error message and handling


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


#: How long a kept connection to an endpoint may sit idle before it is dropped rather than reused. The
#: action server (Sanic) closes a connection idle for its KEEP_ALIVE_TIMEOUT, 5 s by default (tools/serve.py
#: does not change it): dropping ours well before that avoids sending on a connection it is closing.
KEEPALIVE_S = 2.0
#: The errors of a request cut off on a kept connection before any reply: sent once more, freshly.
#: (`ClientConnectorError`, a connection refused, is a subclass of ClientOSError and is not one of them.)
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_KEPT = "_triage_kept_session"  # the attribute of an EndpointConfig that holds (event loop, session)
_original_close_resources = rasa.core.run.close_resources


def _new_session(endpoint: EndpointConfig, connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """A session configured as Rasa's `EndpointConfig.session()` configures one, on `connector`."""
    auth = None
    if endpoint.basic_auth:
        auth = aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"])
    timeout = aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT)
    return aiohttp.ClientSession(headers=endpoint.headers, auth=auth, timeout=timeout, connector=connector)


def _kept_session(endpoint: EndpointConfig) -> aiohttp.ClientSession:
    """The endpoint's session on the running event loop, made on first use (and again if it was closed)."""
    loop = asyncio.get_running_loop()
    kept: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = getattr(endpoint, _KEPT, None)
    if kept is not None and kept[0] is loop and not kept[1].closed:
        return kept[1]
    session = _new_session(endpoint, aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S))
    setattr(endpoint, _KEPT, (loop, session))
    return session


async def close_kept_sessions(*endpoints: EndpointConfig | None) -> None:
    """Closes the sessions the endpoints keep on the running event loop (when the server stops)."""
    loop = asyncio.get_running_loop()
    for endpoint in endpoints:
        kept = getattr(endpoint, _KEPT, None)
        if kept is not None and kept[0] is loop:
            delattr(endpoint, _KEPT)
            await kept[1].close()


async def _request(
    self: EndpointConfig,
    method: str = "post",
    subpath: str | None = None,
    content_type: str | None = "application/json",
    compress: bool = False,
    **kwargs: Any,
) -> Any:
    """Rasa 3.6.21's `EndpointConfig.request` on the endpoint's kept session, sent once more on a fresh
    connection when a kept one was stale."""
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    headers.update(kwargs.pop("headers", {}))
    headers.update(self.headers)
    url = concat_url(self.url, subpath)
    sslcontext = None
    if self.cafile:
        try:
            sslcontext = ssl.create_default_context(cafile=self.cafile)
        except FileNotFoundError as e:
            raise FileNotFoundException(
                f"Failed to find certificate file, '{os.path.abspath(self.cafile)}' does not exist."
            ) from e
    params = self.combine_parameters(kwargs)

    async def send(session: aiohttp.ClientSession) -> Any:
        async with session.request(
            method, url, headers=headers, params=params, compress=compress, ssl=sslcontext, **kwargs
        ) as response:
            if response.status >= 400:
                raise ClientResponseError(response.status, response.reason or "", await response.content.read())
            try:
                return await response.json()
            except ContentTypeError:
                return None

    try:
        return await send(_kept_session(self))
    except _STALE as error:
        if isinstance(error, aiohttp.ClientConnectorError):
            raise
        log.info("The connection to %s was closed (%s): sending the request again on a new one.", url, error)
    async with _new_session(self, aiohttp.TCPConnector(force_close=True)) as fresh:
        return await send(fresh)


async def _close_resources(app: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Rasa's own `close_resources`, then the action endpoint's kept session."""
    await _original_close_resources(app, loop)
    agent = getattr(app.ctx, "agent", None)
    await close_kept_sessions(getattr(agent, "action_endpoint", None))


_original_call_format = RemoteAction._action_call_format


def _action_call_format(self: RemoteAction, tracker: DialogueStateTracker, domain: Domain) -> dict[str, Any]:
    """Rasa 3.6.21's `RemoteAction._action_call_format` with this turn's events only (see above)."""
    state = tracker.current_state(EventVerbosity.NONE)  # everything but the events
    state["events"] = [event.as_dict() for event in this_turn(tracker)]
    result = {"next_action": self._name, "sender_id": tracker.sender_id, "tracker": state, "version": rasa.__version__}
    if not self._is_selective_domain_enabled() or domain.does_custom_action_explicitly_need_domain(self.name()):
        result["domain"] = domain.as_dict()
    return result


def this_turn(tracker: DialogueStateTracker) -> list[Any]:
    """The events from the latest user message on (every event when there is none)."""
    events = list(tracker.events)
    for index in range(len(events) - 1, -1, -1):
        if isinstance(events[index], UserUttered):
            return events[index:]
    return events


_original_select = ResponseSelector.process


def _select_responses(self: ResponseSelector, messages: list[Message]) -> list[Message]:
    """Rasa's `ResponseSelector.process` for the messages whose intent is the selector's retrieval intent.
    A selector without one (it serves every retrieval intent) runs on every message, as in Rasa."""
    if not self.retrieval_intent:
        return list(_original_select(self, messages))
    asked = [m for m in messages if (m.get(INTENT) or {}).get(INTENT_NAME_KEY) == self.retrieval_intent]
    if asked:
        _original_select(self, asked)
    return messages


def apply() -> None:
    RemoteAction._validate_action_result = _validate_action_result
    RemoteAction._action_call_format = _action_call_format  # type: ignore[method-assign]
    MessageProcessor.parse_message = _parse_message  # type: ignore[method-assign]
    EndpointConfig.request = _request  # type: ignore[method-assign]
    ResponseSelector.process = _select_responses  # type: ignore[method-assign]
    # `serve_application` registers `close_resources` by its module-level name after it has loaded the
    # channels (and so this module): it registers this one.
    rasa.core.run.close_resources = _close_resources
