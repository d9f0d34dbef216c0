"""Delivers the escalation outbox to the care team's webhook (a pager, a ward system, a chat bridge).

Each notification is POSTed as JSON with three headers:

- `X-Triage-Delivery`: the notification's id; a retry carries the same id, so a receiver that got it
  before can drop the repeat.
- `X-Triage-Timestamp`: seconds since the epoch when this attempt was signed.
- `X-Triage-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with `TRIAGE_NOTIFY_SECRET`, of
  `timestamp + "." + body`. A receiver recomputes it and rejects a mismatch or an old timestamp.

A 2xx answer marks it delivered. Anything else (refused connection, timeout, 5xx, 4xx) leaves it in the
outbox and retries it with exponential backoff (2 s doubling to 5 min, with jitter), for as long as it
takes: a receiver that is down loses nothing, and the app's admin page shows what is waiting.

Settings: `TRIAGE_NOTIFY_URL` (empty: nothing is sent; the queue still fills and is shown),
`TRIAGE_NOTIFY_SECRET` (required with a URL, at least 32 characters).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import random
import time
from dataclasses import dataclass

import aiohttp

from bot.careteam.store import Delivery, EscalationStore

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
#: Added to a claimed batch's lease, for the database writes around the deliveries.
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True)
class NotifierSettings:
    url: str
    secret: str
    timeout_s: float = 10.0
    backoff_first_s: float = 2.0
    backoff_max_s: float = 300.0
    poll_s: float = 1.0
    batch: int = 20  # notifications claimed per pass

    @property
    def lease_s(self) -> float:
        """How long a claimed batch is kept from other workers: as long as its deliveries may take one
        after another, so no other worker sends one of them again while it waits its turn."""
        return self.batch * self.timeout_s + LEASE_MARGIN_S

    @classmethod
    def from_env(cls) -> NotifierSettings | None:
        """The settings, None when no URL is configured; a URL without a good secret is an error."""
        url = os.environ.get("TRIAGE_NOTIFY_URL", "").strip()
        if not url:
            return None
        secret = os.environ.get("TRIAGE_NOTIFY_SECRET", "")
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"TRIAGE_NOTIFY_SECRET must have at least {MIN_SECRET_LENGTH} characters")
        if not url.startswith(("https://", "http://")):
            raise ValueError("TRIAGE_NOTIFY_URL must be an http(s) URL")
        return cls(url=url, secret=secret)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        return False
    # Compared as bytes: compare_digest raises on strings with non-ASCII characters, and a header may
    # carry any (undecodable bytes arrive as surrogates, hence "replace").
    expected = sign(secret, timestamp, body).encode()
    return age <= max_age_s and hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def backoff(attempts: int, settings: NotifierSettings) -> float:
    """Seconds before the next try after `attempts` failures: doubling, capped, with +-20 % jitter."""
    base = min(settings.backoff_first_s * 2 ** max(attempts - 1, 0), settings.backoff_max_s)
    return float(base * random.uniform(0.8, 1.2))


class Notifier:
    def __init__(self, store: EscalationStore, settings: NotifierSettings) -> None:
        self.store = store
        self.settings = settings

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """One pass over the due notifications; returns how many were delivered."""
        due = await asyncio.to_thread(self.store.claim, self.settings.batch, self.settings.lease_s)
        done = 0
        for delivery in due:
            error = await self._post(session, delivery)
            if error is None:
                await asyncio.to_thread(self.store.delivered, delivery)
                done += 1
            else:
                wait = backoff(delivery.attempts + 1, self.settings)
                log.warning(
                    "notification %s (escalation %s) not delivered, attempt %d: %s; next try in %.0f s",
                    delivery.delivery_id,
                    delivery.escalation_id,
                    delivery.attempts + 1,
                    error,
                    wait,
                )
                await asyncio.to_thread(self.store.failed, delivery, error, wait)
        return done

    async def _post(self, session: aiohttp.ClientSession, delivery: Delivery) -> str | None:
        body = json.dumps(delivery.payload, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Triage-Delivery": delivery.delivery_id,
            "X-Triage-Timestamp": timestamp,
            "X-Triage-Signature": sign(self.settings.secret, timestamp, body),
        }
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            async with session.post(self.settings.url, data=body, headers=headers, timeout=timeout) as answer:
                if 200 <= answer.status < 300:
                    return None
                return f"HTTP {answer.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            return f"{type(error).__name__}: {error}"[:300]

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Delivers until `stop` is set (or forever); a database error is logged and retried."""
        stop = stop or asyncio.Event()
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    await self.deliver_due(session)
                except Exception:
                    log.exception("notifier pass failed; retrying")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.poll_s)
