"""Whose conversation a message belongs to: conversation ids that the server issues, and the
server-side conversation key each channel files a message under.

A web or socket.io conversation is named by an id that only the server makes, `<channel>:<random>.<tag>`:
128 random bits and an HMAC-SHA256 tag (truncated to 128 bits) over the channel and those bits, under
a server secret, both in unpadded base64url. The id is the conversation's key on the server (the
tracker's sender id, the escalation's patient id) and what the client sends back. The
server checks an id a client brings back by recomputing the tag, so it needs no table of issued ids,
and any replica holding the same secret accepts the ids of the others. A client that names a
conversation it was not given (a guess, another channel's id, another patient's phone number) does
not get it: it gets a new conversation, and is still answered.

Every key carries its channel (`web:…`, `socketio:…`, `sms:+15550100`) and an id is only accepted on the
channel it was issued for, so no client input on one channel can name a conversation of another; SMS
is keyed by the carrier's number, checked by the Twilio signature.

The secret: `TRIAGE_SESSION_SECRET` (32 characters or more; set the same value on every replica behind
a load balancer), otherwise the file `TRIAGE_SESSION_SECRET_FILE` (default `var/session-secret`),
created once with 256 random bits, owner-only (0600). Changing the secret ends every web and socket.io
conversation's id: each patient's next message starts a new conversation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

#: Channels whose conversations are named by issued ids, and the prefix of their server-side keys.
WEB = "web"
SOCKETIO = "socketio"
SMS = "sms"
_RANDOM_BYTES = 16  # 128 bits: not guessable, not enumerable
_TAG_BYTES = 16
#: The part after "<channel>:", two unpadded base64url parts of 22 characters: "<random>.<tag>".
TOKEN_CHARS = 45
MIN_SECRET_CHARS = 32
DEFAULT_SECRET_FILE = Path("var") / "session-secret"


class SessionSecretError(RuntimeError):
    """The configured secret cannot be used; the message says what to set."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


class Sessions:
    """Issues and checks conversation ids under one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise SessionSecretError(f"the session secret must be at least {MIN_SECRET_CHARS} bytes")
        self._secret = secret

    def _tag(self, channel: str, random_part: str) -> str:
        mac = hmac.new(self._secret, f"{channel}:{random_part}".encode("ascii"), hashlib.sha256)
        return _b64(mac.digest()[:_TAG_BYTES])

    def issue(self, channel: str) -> str:
        """A new id for a conversation on `channel`."""
        random_part = _b64(secrets.token_bytes(_RANDOM_BYTES))
        return f"{channel}:{random_part}.{self._tag(channel, random_part)}"

    def valid(self, channel: str, candidate: object) -> bool:
        """Whether `candidate` is an id this server (or a replica with the same secret) issued for
        `channel`. Anything else, of any type or length, is simply not valid."""
        prefix = f"{channel}:"
        if not isinstance(candidate, str) or len(candidate) != len(prefix) + TOKEN_CHARS:
            return False
        token = candidate.removeprefix(prefix)
        if len(token) != TOKEN_CHARS or token.count(".") != 1:
            return False
        random_part, tag = token.split(".")
        if not random_part.isascii() or not tag.isascii():
            return False
        raw = _unb64(random_part)
        if raw is None or len(raw) != _RANDOM_BYTES or _b64(raw) != random_part:
            return False
        return hmac.compare_digest(tag, self._tag(channel, random_part))

    def resume_or_issue(self, channel: str, candidate: object) -> tuple[str, bool]:
        """`candidate` when it is a valid id for `channel`, else a new one; and whether it was resumed."""
        if self.valid(channel, candidate):
            return str(candidate), True
        return self.issue(channel), False


def load_secret(environ: dict[str, str] | None = None) -> bytes:
    """The secret from `TRIAGE_SESSION_SECRET`, or from its file (made on first use)."""
    env = dict(os.environ) if environ is None else environ
    configured = env.get("TRIAGE_SESSION_SECRET", "").strip()
    if configured:
        if len(configured) < MIN_SECRET_CHARS:
            raise SessionSecretError(
                f"TRIAGE_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or unset to use a file"
            )
        return configured.encode("utf-8")
    path = Path(env.get("TRIAGE_SESSION_SECRET_FILE", "").strip() or DEFAULT_SECRET_FILE)
    return _secret_file(path)


def _secret_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: replicas starting at the
        # same moment never read a half-written secret, and the first link wins for all of them.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".session-secret-")
        try:
            os.fchmod(handle, 0o600)
            os.write(handle, secrets.token_urlsafe(32).encode("ascii") + b"\n")
            os.close(handle)
            try:
                os.link(temporary, path)
                logger.info("made a new session secret in %s (owner-only)", path)
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    if path.stat().st_mode & 0o077:
        raise SessionSecretError(f"{path} is readable by others: `chmod 600 {path}`")
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise SessionSecretError(f"{path} holds fewer than {MIN_SECRET_CHARS} characters: delete it to make a new one")
    return secret


@lru_cache(maxsize=1)
def default_sessions() -> Sessions:
    """The process's sessions, from the environment (read once)."""
    return Sessions(load_secret())
