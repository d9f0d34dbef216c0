"""The conversation lock for several Rasa replicas: Rasa's Redis lock store, with each change made atomic.

Rasa 3.6's `RedisLockStore` reads a conversation's ticket queue, changes it in Python and writes it back
(`issue_ticket`, `update_lock`, `cleanup`). Two replicas that do so at the same moment overwrite each
other: both take the same ticket and run their turns at once, or one's ticket vanishes and its turn ends
in a LockError. The tracker store then keeps only the events past the count it already holds, so a
message sent while another of the same conversation is being answered can be lost: on our scale-out
deployment (tools/cluster.py), six messages of one patient sent at once through two replicas lost at
least one in 34 of 50 rounds, and none in 30 with this store (RasaHQ/rasa#9213 reports the race; Rasa's
concurrent variant of this store was withdrawn, #11428).

Here every read-change-write of the queue runs in a Redis transaction on the conversation's key
(WATCH, then MULTI/EXEC, repeated if another replica changed the key meanwhile). The stored format,
the tickets, their lifetimes (TICKET_LOCK_LIFETIME) and the waiting are Rasa's.

endpoints.yml:

    lock_store:
      type: bot.lock_store.AtomicRedisLockStore
      url: redis.example.org      # and port, db, password, use_ssl, key_prefix ... as for type: redis
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

#: A change of one conversation's lock: the stored lock (None: there is none) in, the lock to store
#: (None: delete it) and a value for the caller out.
Change = Callable[[TicketLock | None], tuple[TicketLock | None, Any]]


class AtomicRedisLockStore(RedisLockStore):  # type: ignore[misc]
    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        # Rasa builds a lock store named by module path from its endpoint configuration alone.
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def take(lock: TicketLock | None) -> tuple[TicketLock, int]:
            lock = lock or self.create_lock(conversation_id)
            return lock, int(lock.issue_ticket(lock_lifetime))

        try:
            return int(self._change(conversation_id, take))
        except Exception as error:  # as Rasa's: the caller handles LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: str) -> None:
        def drop_expired(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._change(conversation_id, drop_expired)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._change(conversation_id, _without(ticket_number, delete_when_empty=False))

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Removes the ticket, and the lock with it when no one else holds a ticket: in one step, so that
        a ticket issued meanwhile by another replica is neither dropped nor left without its lock."""
        self._change(conversation_id, _without(ticket_number, delete_when_empty=True))

    def _change(self, conversation_id: str, change: Change) -> Any:
        """Applies `change` to the stored lock atomically; `change` returns the lock to store (None: delete
        it) and a value to return. It may run more than once, when another client changed the key."""
        key = self.key_prefix + conversation_id

        def attempt(pipe: Any) -> Any:
            stored = pipe.get(key)  # under WATCH: read now, and EXEC fails if the key changes before it
            lock = TicketLock.from_dict(json.loads(stored)) if stored else None
            new, value = change(lock)
            pipe.multi()
            if new is None:
                pipe.delete(key)
            else:
                pipe.set(key, new.dumps())
            return value

        return self.red.transaction(attempt, key, value_from_callable=True)


def _without(ticket_number: int, delete_when_empty: bool) -> Change:
    def change(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
        if lock is None:
            return None, None
        lock.remove_ticket_for(ticket_number)
        return (None if delete_when_empty and not lock.is_someone_waiting() else lock), None

    return change
