"""The SMS channel at `/webhooks/sms/webhook`, for Twilio (or any carrier gateway speaking its webhook).

- Every request must carry a valid `X-Twilio-Signature` for the configured auth token and public URL;
  otherwise 403, and nothing is processed or stored. Without an auth token the channel answers 503.
- Twilio signs the URL and the fields' names and values concatenated without separators, so the same
  signature also fits the same characters cut into fields differently (moving `To` into `MessageSid`
  made a new MessageSid, and so a replay that was processed again). The fields read here must have
  their exact formats (`MessageSid`: SM or MM and 32 hex digits; `From`: a phone number) and appear
  once; otherwise 400, nothing stored.
- The signed URL is `TRIAGE_SMS_PUBLIC_URL`. Without it, it would come from the request's Host header,
  which the client chooses: the channel says so at start-up and then accepts only requests made to
  localhost from this machine (tests, a local gateway); others get 503 until it is set.
- One phone number is one conversation (sender `sms:<number>`).
- The text is stored before any reply is attempted; a retry or replay of the same MessageSid gets the
  stored reply and is not processed again.
- The reply is TwiML in the webhook response: one GSM-7 SMS of at most three segments, most important
  instruction first. If the dialogue takes longer than the reply budget, the webhook answers with the
  safe reply at once and the full reply follows through Twilio's REST API (when account SID and sender
  number are configured).
- STOP / START / HELP and their usual synonyms are handled here, as carriers require. After STOP,
  texts are still stored and triaged (the care team sees them) but no SMS is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request, RequestParameters
from sanic.response import HTTPResponse
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.channels import inbound, sms_text
from bot.channels.limits import Limits
from bot.channels.safety import record_safety_net, refuse, safe_reply
from bot.channels.sms_store import SmsStore
from bot.settings import contacts

logger = logging.getLogger(__name__)

STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"}
START_WORDS = {"start", "unstop", "yes"}
HELP_WORDS = {"help", "info"}
#: Twilio waits 15 s for a webhook answer; past this budget the safe reply goes out in the webhook.
REPLY_BUDGET_S = float(os.environ.get("TRIAGE_SMS_REPLY_BUDGET_S", "10"))
#: Longest text processed; a carrier joins at most about 1,600 characters, longer bodies are cut.
MAX_BODY_CHARS = inbound.MAX_MESSAGE_CHARS
#: Twilio's message ids: SM (SMS) or MM (MMS) and 32 lower-case hex digits, nothing more.
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
#: An inbound number as carriers report it (E.164 with or without "+", or a short code).
PHONE = re.compile(r"\+?[0-9]{3,20}")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


class SmsInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "sms"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> SmsInput:
        values = {key: str(value or "") for key, value in (credentials or {}).items()}
        return cls(
            auth_token=values.get("auth_token", ""),
            public_url=values.get("public_url", ""),
            account_sid=values.get("account_sid", ""),
            from_number=values.get("from_number", ""),
        )

    def __init__(self, auth_token: str, public_url: str = "", account_sid: str = "", from_number: str = "") -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._auth_token = auth_token
        self._public_url = public_url
        if auth_token and not public_url:
            logger.warning(
                "sms channel: TRIAGE_SMS_PUBLIC_URL is not set, so the URL Twilio signed would come from each "
                "request's Host header; only requests to localhost from this machine are accepted until it is set"
            )
        self._limits = Limits()
        self._account_sid = account_sid
        self._from_number = from_number
        self._store: SmsStore | None = None
        #: Twilio's HTTP client for late replies; None uses Twilio's default (tests pass a recorder).
        self.http_client: Any = None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"triage_sms_{id(self)}", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok" if self._validator else "not configured"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if self._validator is None:
                return response.json({"error": "the SMS channel has no auth token configured"}, status=503)
            if not self._public_url and not _local(request):
                logger.error("sms channel: request refused: set TRIAGE_SMS_PUBLIC_URL to the URL Twilio posts to")
                return response.json({"error": "the SMS channel has no public URL configured"}, status=503)
            # Twilio signs every field, empty ones too ("Body" of a picture-only message).
            form = _form(request)
            if not self._signed(request, form):
                logger.warning("sms channel: request with a missing or wrong signature refused")
                return response.json({"error": "invalid signature"}, status=403)
            problem = _fields_problem(form)
            if problem:
                logger.warning("sms channel: signed request with malformed fields refused (%s)", problem)
                return response.json({"error": problem}, status=400)
            sid, phone = form["MessageSid"][0], form["From"][0]
            body = inbound.readable((form.get("Body") or "")[:MAX_BODY_CHARS])
            store = self._get_store()
            received, new = store.receive(sid, phone, body)
            if not new:
                return _twiml(received.reply or "")
            reply, status = await self._answer(on_new_message, phone, body, store)
            store.answered(sid, reply, status)
            return _twiml(reply)

        return webhook

    async def _answer(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]], phone: str, body: str, store: SmsStore
    ) -> tuple[str, str]:
        keyword = body.strip().lower().strip(".!")
        numbers = contacts()
        if keyword in STOP_WORDS:
            store.set_opt_out(phone, True)
            return (
                "You will get no more texts from this number. Reply START to start again. "
                f"In an emergency, call {numbers.emergency_number}."
            ), "answered"
        if keyword in START_WORDS:
            store.set_opt_out(phone, False)
            return "You can text me again. Tell me how you feel in your own words. Reply HELP for help.", "answered"
        if keyword in HELP_WORDS:
            return (
                "Blinatumomab symptom line: text how you feel and I will tell you if you should call. "
                f"In an emergency, call {numbers.emergency_number}. Reply STOP to stop."
            ), "answered"
        opted_out = store.opted_out(phone)
        if not body.strip():
            text = f"Your text was empty. Tell me how you feel. In an emergency, call {numbers.emergency_number}."
            return ("" if opted_out else text), ("opted_out" if opted_out else "answered")
        collector = CollectingOutputChannel()
        message = UserMessage(inbound.patient_text(body), collector, f"sms:{phone}", input_channel=self.name())
        refusal = self._limits.check(phone)
        if refusal is not None:
            logger.warning("sms channel: rate limit reached; safe reply only")
            text, _ = await refuse(message, refusal)  # recorded with the phone's own escalation, grouped
            notice = "You have sent many texts in a short time: wait a minute before the next one."
            return ("" if opted_out else sms_text.compose([text, notice])), ("opted_out" if opted_out else "answered")
        task = asyncio.ensure_future(on_new_message(message))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=REPLY_BUDGET_S)
        except asyncio.TimeoutError:
            logger.warning(
                "sms channel: reply budget of %.0f s exceeded; safe reply now, full reply later", REPLY_BUDGET_S
            )
            loop = asyncio.get_running_loop()  # Twilio's client blocks: send from a worker thread
            task.add_done_callback(lambda _: loop.run_in_executor(None, self._send_later, phone, collector, opted_out))
            text, _ = safe_reply(body)
            return ("" if opted_out else sms_text.compose([text])), ("opted_out" if opted_out else "answered")
        except Exception:
            logger.exception("sms channel: message handling failed")
        texts = [m["text"] for m in collector.messages if m.get("text")]
        if not texts:
            text, custom = safe_reply(body)
            await asyncio.to_thread(record_safety_net, message, custom["triage"])
            texts = [text]
        if opted_out:
            return "", "opted_out"
        buttons = [b.get("title", "") for m in collector.messages for b in m.get("buttons") or []]
        return sms_text.compose(texts, buttons), "answered"

    def _send_later(self, phone: str, collector: CollectingOutputChannel, opted_out: bool) -> None:
        texts = [m["text"] for m in collector.messages if m.get("text")]
        if opted_out or not texts:
            return
        if not (self._account_sid and self._from_number):
            logger.error("sms channel: a late reply could not be sent (no account SID or sender number set)")
            return
        from twilio.rest import Client

        try:
            Client(self._account_sid, self._auth_token, http_client=self.http_client).messages.create(
                to=phone, from_=self._from_number, body=sms_text.compose(texts)
            )
        except Exception:
            logger.exception("sms channel: sending a late reply through Twilio failed")

    def _signed(self, request: Request, form: Any) -> bool:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or self._validator is None:
            return False
        url = self._public_url or request.url
        return bool(self._validator.validate(url, form, signature))

    def _get_store(self) -> SmsStore:
        if self._store is None:
            self._store = SmsStore()
        return self._store


def _form(request: Request) -> RequestParameters:
    """The form fields, empty values kept (Sanic's `request.form` drops them)."""
    content_type = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" not in content_type:
        return RequestParameters()
    return RequestParameters(parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _fields_problem(form: RequestParameters) -> str:
    """Why the fields this channel reads cannot be trusted as signed, or "" when they can."""
    for name, pattern in (("MessageSid", MESSAGE_SID), ("From", PHONE)):
        values = form.getlist(name) or []
        if len(values) != 1 or not pattern.fullmatch(values[0]):
            return f"{name} is required once, in Twilio's format"
    if len(form.getlist("Body") or []) > 1:
        return "Body must appear once"
    return ""


def _local(request: Request) -> bool:
    """A request made to localhost from this machine: its Host header cannot have been chosen to match
    a signature made for another address (only the local gateway or a test could sign it)."""
    try:
        loopback = ipaddress.ip_address(str(request.ip)).is_loopback
    except ValueError:
        return False
    host = request.host or ""
    host = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    return loopback and host in _LOCAL_HOSTS


def _twiml(text: str) -> HTTPResponse:
    twiml = MessagingResponse()
    if text:
        twiml.message(text)
    return response.text(str(twiml), content_type="application/xml")
