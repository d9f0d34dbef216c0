"""The conversation store: Rasa's SQL tracker store, with SQLite set up for a server.

On SQLite (the default database) each connection uses write-ahead logging, so that a reader never
blocks the writer, waits up to `TRIAGE_SQLITE_BUSY_MS` for a lock instead of failing at once, and keeps
`synchronous=FULL`: a message the patient sent is on disk before the reply goes out. Other databases
(PostgreSQL) are used as Rasa configures them.

`TRIAGE_DB_URL`, when set, names the database for this store as for the rest of the project
(bot/database.py), overriding endpoints.yml's dialect and db: one setting moves everything.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore

BUSY_TIMEOUT_MS = int(os.environ.get("TRIAGE_SQLITE_BUSY_MS", "5000"))


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


def sqlite_pragmas(connection: Any, record: Any) -> None:
    """Write-ahead log, full sync, and a wait on locks; for every SQLite connection of the project."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()
