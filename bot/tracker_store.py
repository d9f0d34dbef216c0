"""The conversation store: Rasa's SQL tracker store, with SQLite set up for a server.

On SQLite (the default database) each connection uses write-ahead logging, so that a reader never
blocks the writer, waits up to `TRIAGE_SQLITE_BUSY_MS` for a lock instead of failing at once, and keeps
`synchronous=FULL`: a message the patient sent is on disk before the reply goes out. Other databases
(PostgreSQL) are used as Rasa configures them.

A save or a read that fails because the database is locked or unreachable is retried with backoff
for up to `TRIAGE_DB_RETRY_S` (30) seconds before Rasa's fallback takes over (which would keep the
turn in this process's memory only, and start a reader's conversation afresh): a database that is
briefly unavailable delays the reply, it does not lose the conversation.

`TRIAGE_DB_URL`, when set, names the database for this store as for the rest of the project
(bot/database.py), overriding endpoints.yml's dialect and db: one setting moves everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.exc import InterfaceError, OperationalError

BUSY_TIMEOUT_MS = int(os.environ.get("TRIAGE_SQLITE_BUSY_MS", "5000"))
RETRY_S = float(os.environ.get("TRIAGE_DB_RETRY_S", "30"))

logger = logging.getLogger(__name__)
Result = TypeVar("Result")


class TriageSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        url = os.environ.get("TRIAGE_DB_URL", "").strip()
        if url:
            parsed = sa.engine.make_url(url)
            kwargs.update(
                dialect=parsed.drivername,
                host=parsed.host,
                port=parsed.port,
                db=parsed.database,
                username=parsed.username,
                password=parsed.password,
            )
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
            self.engine.dispose()  # connections opened so far lack the pragmas

    async def save(self, tracker: DialogueStateTracker) -> None:
        await _retrying(lambda: super(TriageSQLTrackerStore, self).save(tracker), "save", tracker.sender_id)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        return await _retrying(lambda: super(TriageSQLTrackerStore, self).retrieve(sender_id), "read", sender_id)


async def _retrying(call: Callable[[], Awaitable[Result]], what: str, sender_id: str) -> Result:
    deadline = time.monotonic() + RETRY_S
    delay = 0.2
    while True:
        try:
            return await call()
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "conversation %s of %s failed (%s); retrying in %.1f s", what, sender_id, type(error).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def sqlite_pragmas(connection: Any, record: Any) -> None:
    """Write-ahead log, full sync, and a wait on locks; for every SQLite connection of the project."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()
