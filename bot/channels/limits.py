"""Rate limits on the patient webhooks: a sliding window of the last minute per key (a sender, a phone
number, a client address), kept in this process.

A patient writes a few messages a minute; a script flooding the assistant writes hundreds and would
slow it down for everyone. Past the limit a message is still read by the triage core (in-process,
about a millisecond) and answered with the safe reply, and its words are stored for the care team,
but it does not enter the dialogue. `Limits.check` says which limit refused it: messages refused by
one sender's limit join that sender's own escalation; messages refused by an address's limit (a
flood with a new sender id each time) join one rate-limit incident for that address, with a count
and one notification, instead of one escalation each (bot/careteam/store.py). Limits per minute,
from the environment (0 turns a limit off):

| variable | default | key |
|---|---|---|
| `TRIAGE_RATE_PER_SENDER` | 20 | the REST/socket.io sender id, the SMS phone number |
| `TRIAGE_RATE_PER_ADDRESS` | 120 | the client's address on the REST webhook |

Behind a proxy, set `SANIC_PROXIES_COUNT` (Sanic's setting) so that the forwarded address counts, not
the proxy's.

With several replicas each keeps its own count, so the effective limit is at most replicas x limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0
#: Keys are forgotten after a quiet window; at most this many are remembered (oldest dropped first).
MAX_KEYS = 100_000


def limit_from_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return max(int(value), 0) if value else default
    except ValueError:
        return default


class RateLimiter:
    """At most `per_minute` events per key in any 60 s; `per_minute == 0` allows everything."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Counts an event for `key` and says whether it is within the limit (refused ones count too, so a
        flood stays refused until it stops)."""
        if self.per_minute <= 0:
            return True
        now = self._clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and now - times[0] >= WINDOW_S:
                times.popleft()
            times.append(now)
            if len(times) > 2 * self.per_minute:
                times.popleft()  # bounded memory per key
            self._seen[key] = times  # re-inserted: dict order = least recently seen first
            if len(self._seen) > MAX_KEYS:
                del self._seen[next(iter(self._seen))]
            return len(times) <= self.per_minute


@dataclass(frozen=True)
class Refusal:
    """Which limit refused a message: `sender` (one conversation writing too fast) or `address` (one
    client address writing too fast, whatever sender ids it uses), and the key that was over it."""

    limit: str
    key: str

    @property
    def source(self) -> str:
        """The incident's name for an address refusal, as the care team reads it."""
        return f"{self.limit} {self.key}"


class Limits:
    def __init__(self, per_sender: int | None = None, per_address: int | None = None) -> None:
        if per_sender is None:
            per_sender = limit_from_env("TRIAGE_RATE_PER_SENDER", 20)
        if per_address is None:
            per_address = limit_from_env("TRIAGE_RATE_PER_ADDRESS", 120)
        self.sender = RateLimiter(per_sender)
        self.address = RateLimiter(per_address)

    def allow(self, sender: str, address: str = "") -> bool:
        return self.check(sender, address) is None

    def check(self, sender: str, address: str = "") -> Refusal | None:
        """Counts the message against both limits; None when it is within them. A sender over its own
        limit is named first: their messages belong with their own conversation."""
        by_sender = self.sender.allow(sender)
        by_address = self.address.allow(address) if address else True
        if not by_sender:
            return Refusal("sender", sender)
        if not by_address:
            return Refusal("address", address)
        return None
